/**
 * One validation error inside one object, as a field path; the loader turns the path into a
 * file:line. Its own module so that schema.ts, rules.ts and the semantic checks can all produce
 * it without importing one another.
 */
export interface FieldError {
  /** "spec.disks[1].size"; "" for the object itself. */
  path: string;
  message: string;
  /** When the field is missing, the error is shown at its parent. */
  missing?: boolean;
}
