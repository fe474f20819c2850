/**
 * Which file defines which object: the directory's declarations, as last read. Pure bookkeeping,
 * no I/O (the FileStore reads the files and resolves what changed).
 *
 * Rules:
 * - An object defined in several files: the file that defined it first stands (the others carry
 *   an "already defined in" error); when that file stops defining it, the next one takes over.
 *   A manifest moved to another path (its new path read before its old one disappears), or a
 *   file split in two, is therefore never a deletion.
 * - A file that fails to load (any error) keeps every definition it had: a half-saved edit never
 *   takes an object away. Its valid documents are applied.
 */
import type { LocatedResource } from "../../api/addresses.js";
import type { ManifestError, SourceLocation } from "../../api/manifest.js";
import type { Resource } from "../../api/types.js";

export interface Definition {
  resource: Resource;
  source: SourceLocation;
}

interface FileEntry {
  defs: Map<string, Definition>;
  errors: ManifestError[];
  /** inode, size and mtime when read: the directory check re-reads a file whose stamp changed. */
  stamp: string;
  /** Per id: when its definition last changed (the load order of the checks across documents). */
  seqs: Map<string, number>;
}

export class DefinitionIndex {
  private readonly files = new Map<string, FileEntry>();
  /** Files defining each object id, in the order they first defined it. */
  private readonly claims = new Map<string, string[]>();
  private seq = 0;

  /** Record what a file defines now; returns the ids whose definitions changed or may have. */
  setFile(file: string, defs: Map<string, Definition>, errors: ManifestError[], stamp: string): Set<string> {
    const before = this.files.get(file);
    const kept = new Map(defs);
    if (errors.length > 0 && before) for (const [id, d] of before.defs) if (!kept.has(id)) kept.set(id, d);
    const affected = new Set([...(before?.defs.keys() ?? []), ...kept.keys()]);
    for (const id of before?.defs.keys() ?? []) if (!kept.has(id)) this.unclaim(id, file);
    for (const id of kept.keys()) if (!before?.defs.has(id)) this.claim(id, file);
    const seqs = new Map<string, number>();
    for (const [id, d] of kept) {
      const was = before?.defs.get(id);
      const same = was && (was === d || JSON.stringify(was.resource) === JSON.stringify(d.resource));
      seqs.set(id, same ? (before?.seqs.get(id) ?? ++this.seq) : ++this.seq);
    }
    this.files.set(file, { defs: kept, errors, stamp, seqs });
    return affected;
  }

  /** The file is gone; returns the ids it defined. */
  removeFile(file: string): Set<string> {
    const before = this.files.get(file);
    if (!before) return new Set();
    this.files.delete(file);
    for (const id of before.defs.keys()) this.unclaim(id, file);
    return new Set(before.defs.keys());
  }

  private claim(id: string, file: string): void {
    const list = this.claims.get(id);
    if (list) list.push(file);
    else this.claims.set(id, [file]);
  }

  private unclaim(id: string, file: string): void {
    const list = this.claims.get(id)?.filter((f) => f !== file) ?? [];
    if (list.length > 0) this.claims.set(id, list);
    else this.claims.delete(id);
  }

  /** The standing definition of an object, if any file defines it. */
  winner(id: string): (Definition & { file: string }) | undefined {
    const file = this.claims.get(id)?.[0];
    const def = file ? this.files.get(file)?.defs.get(id) : undefined;
    return file && def ? { ...def, file } : undefined;
  }

  /** The files defining any of these ids. */
  filesOf(ids: Iterable<string>): Set<string> {
    const out = new Set<string>();
    for (const id of ids) for (const f of this.claims.get(id) ?? []) out.add(f);
    return out;
  }

  /** A file's errors: its own, and one per object that another file defined first. */
  errorsOf(file: string): ManifestError[] {
    const entry = this.files.get(file);
    if (!entry) return [];
    const out = [...entry.errors];
    for (const [id, def] of entry.defs) {
      const owner = this.claims.get(id)?.[0];
      if (owner && owner !== file)
        out.push({
          ...def.source,
          path: "metadata.name",
          message: `${id.replace("|", " ")} is already defined in ${owner}`,
        });
    }
    return out;
  }

  /**
   * The standing definitions, in load order: the order in which they last changed (at start, the
   * directory's order), so that of two conflicting documents the newer edit is the later one.
   */
  standing(): (LocatedResource & { id: string; file: string })[] {
    const out: (LocatedResource & { id: string; file: string; seq: number })[] = [];
    for (const [id, files] of this.claims) {
      const entry = this.files.get(files[0] as string);
      const def = entry?.defs.get(id);
      if (!entry || !def) continue;
      // `locate` (where each field is) is not enumerable on a loaded resource: passed on by hand.
      const { locate } = def as LocatedResource;
      out.push({
        resource: def.resource,
        source: def.source,
        id,
        file: files[0] as string,
        seq: entry.seqs.get(id) ?? 0,
        ...(locate ? { locate } : {}),
      });
    }
    return out.sort((a, b) => a.seq - b.seq);
  }

  stampOf(file: string): string | undefined {
    return this.files.get(file)?.stamp;
  }

  knownFiles(): string[] {
    return [...this.files.keys()];
  }

  definedIds(): string[] {
    return [...this.claims.keys()];
  }
}
