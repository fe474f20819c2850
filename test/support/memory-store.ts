/** The in-memory store the tests run the controllers on (src/store/memory.ts). */
export { MemoryStore, type WriteRecord } from "../../src/store/memory.js";
