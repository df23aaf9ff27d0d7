// File-system questions shared by the data reader and the run folder.

/** Whether anything (file, folder, link target) exists at `path`. */
export function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}
