// Ctrl-C (SIGINT), SIGTERM (what Slurm, Kubernetes and systemd send before they kill) and SIGHUP (a
// closed terminal) all ask a run to stop: finish the current step, save, exit non-zero. A second
// signal gets the default action again, an immediate abort; saves are atomic (src/run_dir.ts), so an
// abort mid-save leaves the previous save in place.

const SIGNALS: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM", "SIGHUP"];
const SIGNAL_NUMBERS: Partial<Record<Deno.Signal, number>> = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };

/** Thrown when a run stopped on a signal after saving; the exit code is the shell's 128 + signal. */
export class StoppedBySignal extends Error {
  readonly exitCode: number;
  constructor(readonly signal: Deno.Signal, message: string) {
    super(message);
    this.exitCode = 128 + (SIGNAL_NUMBERS[signal] ?? 0);
  }
}

export class StopSignals {
  /** The first signal received, or null. */
  received: Deno.Signal | null = null;
  readonly #listeners = new Map<Deno.Signal, () => void>();

  constructor() {
    for (const signal of SIGNALS) {
      const listener = () => {
        this.received = signal;
        console.error(`\n${signal}: saving a checkpoint, then stopping (a second signal aborts at once)`);
        this.dispose();
      };
      this.#listeners.set(signal, listener);
      Deno.addSignalListener(signal, listener);
    }
  }

  dispose(): void {
    for (const [signal, listener] of this.#listeners) Deno.removeSignalListener(signal, listener);
    this.#listeners.clear();
  }
}
