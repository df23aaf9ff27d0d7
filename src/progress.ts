// A progress line on stderr: on a terminal a bar with rates and ETA, redrawn at most 10×/s and cut
// to the terminal's width (a wrapped line would not be redrawn in place); otherwise (logs, CI) a
// plain line at most every 10 s, so log files stay short. Two rates, labelled: the average since
// the start ("avg") and over the last few seconds ("now"), which shows a slowdown at once.
const encoder = new TextEncoder();
const RECENT_MS = 5000;

export class Progress {
  #start = performance.now();
  #lastDraw = -Infinity;
  #done = 0;
  #recent: [ms: number, done: number][] = [];
  readonly #tty = Deno.stderr.isTerminal();

  constructor(readonly label: string, readonly total: number, readonly unit: string) {}

  update(done: number, extra?: string): void {
    this.#done = done;
    const now = performance.now();
    this.#recent.push([now, done]);
    while (this.#recent.length > 2 && now - this.#recent[1][0] >= RECENT_MS) this.#recent.shift();
    if (now - this.#lastDraw < (this.#tty ? 100 : 10_000)) return;
    this.#lastDraw = now;
    this.#write(this.#line(now, extra), false);
  }

  done(extra?: string): void {
    this.#write(this.#line(performance.now(), extra), true);
  }

  #line(now: number, extra?: string): string {
    const seconds = (now - this.#start) / 1000;
    const rate = seconds > 0 ? this.#done / seconds : 0;
    const fraction = this.total > 0 ? Math.min(1, this.#done / this.total) : 0;
    const eta = rate > 0 ? (this.total - this.#done) / rate : Infinity;
    const parts = [
      this.label,
      this.#tty ? `[${"#".repeat(Math.round(fraction * 30)).padEnd(30, ".")}]` : "",
      `${this.#done}/${this.total} ${this.unit}`,
      `${(fraction * 100).toFixed(1)}%`,
      `avg ${formatRate(rate)} ${this.unit}/s`,
      this.#recent.length >= 2 ? `· now ${formatRate(this.#recentRate())} ${this.unit}/s` : "",
      this.#done < this.total ? `ETA ${formatDuration(eta)}` : `in ${formatDuration(seconds)}`,
      extra ?? "",
    ];
    return parts.filter((p) => p !== "").join(" ");
  }

  #recentRate(): number {
    const [[from, doneFrom], [to, doneTo]] = [this.#recent[0], this.#recent.at(-1)!];
    return to > from ? ((doneTo - doneFrom) / (to - from)) * 1000 : 0;
  }

  #write(line: string, final: boolean): void {
    const text = this.#tty ? `\r\x1b[2K${fit(line)}${final ? "\n" : ""}` : `${line}\n`;
    Deno.stderr.writeSync(encoder.encode(text));
  }
}

/** The line cut to one terminal row (the last column left free: some terminals wrap there). */
function fit(line: string): string {
  const { columns } = Deno.consoleSize();
  return line.length < columns ? line : `${line.slice(0, Math.max(0, columns - 2))}…`;
}

function formatRate(rate: number): string {
  if (rate >= 1e6) return `${(rate / 1e6).toFixed(1)}M`;
  if (rate >= 1e4) return `${(rate / 1e3).toFixed(1)}k`;
  return rate.toFixed(rate >= 100 ? 0 : 1);
}

export function formatDuration(seconds: number): string {
  if (!isFinite(seconds)) return "?";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n: number) => String(n).padStart(2, "0");
  return h > 0 ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
}
