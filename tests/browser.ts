// Opens a page in headless Chromium (Debian's `chromium`) over the DevTools protocol, from Deno
// with nothing but its WebSocket: evaluates an expression in the loaded page, collects console
// errors, uncaught exceptions and every request the page made, and takes a full-page screenshot.
export const CHROMIUM = Deno.env.get("CHROMIUM") ?? "/usr/bin/chromium";

/** Whether Chromium is installed; throws under CI when it is not (.ci/run installs it). */
export function chromiumPresent(test: string): boolean {
  let present = false;
  try {
    present = Deno.statSync(CHROMIUM).isFile;
  } catch { /* missing */ }
  if (!present && Deno.env.get("CI")) {
    throw new Error(`CI: no browser at ${CHROMIUM} (apt-get install chromium)`);
  }
  if (!present) console.error(`${test}: ${CHROMIUM} not found, skipping the browser tests`);
  return present;
}

export interface PageVisit<T> {
  /** The value of `expression`, evaluated after the load event. */
  value: T;
  /** console.error calls, uncaught exceptions and browser log entries of level error. */
  errors: string[];
  /** URLs of every request the page made (the page itself included). */
  requests: string[];
  /** A PNG of the whole page. */
  screenshot: Uint8Array;
}

type Message = {
  id?: number;
  method?: string;
  params?: Record<string, unknown>;
  result?: unknown;
  error?: unknown;
};

/** Loads `url` in a fresh headless Chromium at `width` CSS pixels and evaluates `expression`. */
export async function visit<T>(url: string, expression: string, width = 1240): Promise<PageVisit<T>> {
  const profile = await Deno.makeTempDir({ prefix: "convmixer-chromium-" });
  const browser = new Deno.Command(CHROMIUM, {
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--hide-scrollbars",
      `--user-data-dir=${profile}`,
      "--remote-debugging-port=0",
      "about:blank",
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  try {
    const socket = new WebSocket(await devToolsUrl(browser.stderr));
    await new Promise((resolve, reject) => {
      socket.onopen = resolve;
      socket.onerror = () => reject(new Error("cannot connect to Chromium's DevTools socket"));
    });
    const session = new Session(socket);
    const { targetId } = await session.send<{ targetId: string }>("Target.createTarget", {
      url: "about:blank",
    });
    const { sessionId } = await session.send<{ sessionId: string }>("Target.attachToTarget", {
      targetId,
      flatten: true,
    });
    const page = <R>(method: string, params = {}) => session.send<R>(method, params, sessionId);
    const errors: string[] = [];
    const requests: string[] = [];
    session.on("Runtime.consoleAPICalled", (p) => {
      if (p.type === "error") errors.push(`console.error: ${JSON.stringify(p.args)}`);
    });
    session.on(
      "Runtime.exceptionThrown",
      (p) => errors.push(`exception: ${JSON.stringify(p.exceptionDetails)}`),
    );
    session.on("Log.entryAdded", (p) => {
      const entry = p.entry as { level: string; text: string; url?: string };
      if (entry.level === "error") errors.push(`log: ${entry.text} ${entry.url ?? ""}`);
    });
    session.on("Network.requestWillBeSent", (p) => requests.push((p.request as { url: string }).url));
    for (const domain of ["Page", "Runtime", "Log", "Network"]) await page(`${domain}.enable`);
    await page("Emulation.setDeviceMetricsOverride", {
      width,
      height: 900,
      deviceScaleFactor: 1,
      mobile: false,
    });
    const loaded = session.next("Page.loadEventFired");
    await page("Page.navigate", { url });
    await loaded;
    const { result } = await page<{ result: { value: T } }>("Runtime.evaluate", {
      expression,
      returnByValue: true,
      awaitPromise: true,
    });
    const { cssContentSize } = await page<{ cssContentSize: { height: number } }>("Page.getLayoutMetrics");
    const { data } = await page<{ data: string }>("Page.captureScreenshot", {
      format: "png",
      captureBeyondViewport: true,
      clip: { x: 0, y: 0, width, height: Math.ceil(cssContentSize.height), scale: 1 },
    });
    await session.send("Browser.close", {}).catch(() => {});
    socket.close();
    return {
      value: result.value,
      errors,
      requests,
      screenshot: Uint8Array.from(atob(data), (c) => c.charCodeAt(0)),
    };
  } finally {
    // Browser.close shuts Chromium down with its helper processes; kill it only if it lingers.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const lingering = new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(true), 10_000));
    const lingers = await Promise.race([browser.status.then(() => false), lingering]);
    clearTimeout(timer);
    if (lingers) {
      try {
        browser.kill("SIGKILL");
      } catch { /* already gone */ }
      await browser.status;
    }
    await removeProfile(profile);
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Removes Chromium's profile, retrying while a helper process that outlived it still writes there. */
async function removeProfile(profile: string) {
  for (let attempt = 1;; attempt++) {
    try {
      return await Deno.remove(profile, { recursive: true });
    } catch (error) {
      if (attempt === 20) throw error;
      await sleep(250);
    }
  }
}

/** The ws:// address Chromium prints on stderr once its DevTools server listens. */
async function devToolsUrl(stderr: ReadableStream<Uint8Array>): Promise<string> {
  let text = "";
  const reader = stderr.pipeThrough(new TextDecoderStream()).getReader();
  const deadline = setTimeout(() => reader.cancel(), 30_000);
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`Chromium exited or stalled before DevTools listened:\n${text.slice(-2000)}`);
      text += value;
      const match = /DevTools listening on (ws:\/\/\S+)/.exec(text);
      if (match) {
        // Keep draining stderr so Chromium never blocks on a full pipe.
        (async () => {
          while (!(await reader.read()).done);
        })().catch(() => {});
        return match[1];
      }
    }
  } finally {
    clearTimeout(deadline);
  }
}

/** Requests and events of one DevTools connection (flat sessions: sessionId on each message). */
class Session {
  #nextId = 1;
  #pending = new Map<number, { resolve(result: unknown): void; reject(error: Error): void }>();
  #listeners = new Map<string, ((params: Record<string, unknown>) => void)[]>();

  constructor(readonly socket: WebSocket) {
    socket.onmessage = (event) => this.#receive(JSON.parse(event.data) as Message);
  }

  send<R>(method: string, params: Record<string, unknown>, sessionId?: string): Promise<R> {
    const id = this.#nextId++;
    this.socket.send(JSON.stringify({ id, method, params, sessionId }));
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (result: unknown) => void, reject });
    });
  }

  on(method: string, listener: (params: Record<string, unknown>) => void): void {
    this.#listeners.set(method, [...(this.#listeners.get(method) ?? []), listener]);
  }

  /** Resolves at the next event `method`. */
  next(method: string): Promise<void> {
    return new Promise((resolve) => {
      let fired = false;
      this.on(method, () => {
        if (!fired) resolve();
        fired = true;
      });
    });
  }

  #receive(message: Message): void {
    if (message.id !== undefined) {
      const pending = this.#pending.get(message.id);
      this.#pending.delete(message.id);
      if (message.error) pending?.reject(new Error(`DevTools: ${JSON.stringify(message.error)}`));
      else pending?.resolve(message.result);
      return;
    }
    for (const listener of this.#listeners.get(message.method!) ?? []) listener(message.params ?? {});
  }
}
