// Files that are whole or absent after a crash or a power loss: the bytes go to `PATH.tmp-<pid>`,
// are fsynced, renamed over PATH, and the folder is fsynced (the rename lives in the folder's entry).
import { dirname } from "node:path";

/** The suffix of every temporary; a run folder's leftovers of an interrupted write match it. */
export const TEMPORARY_MARK = ".tmp-";

// tests/kill_test.ts sets this to N to SIGKILL the process at the Nth write step, the instants
// where a kill is most likely to break a run folder. Unset, writeStep does nothing.
const killAtWrite = Number(Deno.env.get("CONVMIXER_KILL_AT_WRITE") ?? 0);
let writeSteps = 0;

/** Marks the end of one step of a multi-step write (a temporary written, a rename, a removal). */
export function writeStep(): void {
  if (++writeSteps === killAtWrite) Deno.kill(Deno.pid, "SIGKILL");
}

/**
 * Writes PATH whole or not at all. `durable: false` is for a file rebuilt from others at every epoch
 * (the run report): still renamed from a finished temporary, so a reader never sees half of it, but
 * not fsynced (a crash loses nothing the next epoch cannot rebuild) and not a kill test's write step.
 */
export async function writeFileAtomic(
  path: string,
  bytes: Uint8Array,
  { durable = true } = {},
): Promise<void> {
  const temporary = `${path}${TEMPORARY_MARK}${Deno.pid}`;
  try {
    const file = await Deno.open(temporary, { write: true, create: true, truncate: true });
    try {
      await writeAll(file, bytes);
      if (durable) await file.sync();
    } finally {
      file.close();
    }
    if (durable) writeStep();
    await Deno.rename(temporary, path);
  } catch (e) {
    await Deno.remove(temporary).catch(() => {});
    throw e;
  }
  if (!durable) return;
  writeStep();
  await syncDirectory(dirname(path));
}

export async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) written += await file.write(bytes.subarray(written));
}

/** fsync of a folder, so that renames, creations and removals in it survive a power loss. */
export async function syncDirectory(path: string): Promise<void> {
  if (Deno.build.os === "windows") return; // folders cannot be opened there; NTFS journals renames
  const folder = await Deno.open(path, { read: true });
  try {
    await folder.sync();
  } finally {
    folder.close();
  }
}
