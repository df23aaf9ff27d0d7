// First-use download of the official CIFAR-10 binary archive: streamed to a temporary file with a
// progress bar, checked against the official MD5, then renamed into place, so an interrupted
// download never leaves a file that looks complete.
import { createHash } from "node:crypto";
import { Progress } from "../progress.ts";

export const CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";
export const CIFAR_MD5 = "c32a1d4ab5d03f1284b67883e8d87530";

/** Downloads the archive at `url` to `dest`, checking its MD5 (`md5`, the official one by default). */
export async function downloadCifar(dest: string, url = CIFAR_URL, md5 = CIFAR_MD5): Promise<void> {
  const temp = `${dest}.tmp`;
  const fail = (why: string) =>
    new Error(
      `${dest}: could not download CIFAR-10 from ${url} (${why}); pass --data PATH with a local copy ` +
        `of cifar-10-binary.tar.gz or its extracted folder (e.g. ../shared/data/cifar-10-binary.tar.gz)`,
    );
  const slash = dest.lastIndexOf("/");
  if (slash > 0) await Deno.mkdir(dest.slice(0, slash), { recursive: true });
  let file: Deno.FsFile | null = null;
  try {
    const response = await fetch(url);
    if (!response.ok || !response.body) {
      await response.body?.cancel();
      throw fail(`HTTP ${response.status}`);
    }
    const total = Number(response.headers.get("content-length") ?? 0);
    const progress = new Progress("download CIFAR-10", Math.round(total / 2 ** 20), "MiB");
    const hash = createHash("md5");
    file = await Deno.open(temp, { write: true, create: true, truncate: true });
    let received = 0;
    for await (const chunk of response.body) {
      hash.update(chunk);
      for (let at = 0; at < chunk.length;) at += await file.write(chunk.subarray(at));
      received += chunk.length;
      progress.update(Math.round(received / 2 ** 20));
    }
    file.close();
    file = null;
    progress.done();
    const digest = hash.digest("hex");
    if (digest !== md5) throw fail(`MD5 ${digest}, expected ${md5}`);
    await Deno.rename(temp, dest);
  } catch (e) {
    file?.close();
    await Deno.remove(temp).catch(() => {});
    throw (e as Error).message.startsWith(dest) ? e : fail((e as Error).message);
  }
}
