/**
 * Defaults that the CRD schema cannot express. Instance types are named sizes, like cloud
 * flavours: `instanceType: medium` instead of `resources`.
 */
import type { BuiltinInstanceTypeName, VMResources } from "./types.js";

export const INSTANCE_TYPES: Readonly<Record<BuiltinInstanceTypeName, VMResources>> = {
  tiny: { cpu: 1, memory: "256Mi" },
  small: { cpu: 1, memory: "1Gi" },
  medium: { cpu: 2, memory: "4Gi" },
  large: { cpu: 4, memory: "8Gi" },
  xlarge: { cpu: 8, memory: "16Gi" },
  "2xlarge": { cpu: 16, memory: "32Gi" },
};

export function instanceTypeResources(name: string): VMResources | undefined {
  return Object.hasOwn(INSTANCE_TYPES, name) ? INSTANCE_TYPES[name as BuiltinInstanceTypeName] : undefined;
}
