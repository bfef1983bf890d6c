// The live feed of /ws, as docs/websocket.md describes it, for the dashboard page.
//
// A page gives it the channels it watches and a handful of hooks; the client keeps the
// connection up by itself: it authenticates, subscribes with the last event id it saw on each
// channel (so the server replays exactly what was missed), drops events it has already seen,
// notices a server that went silent, and reconnects with capped exponential backoff and full
// jitter. It never touches the DOM. When the server ends the connection because its credential
// was revoked, it stops and says so.

export const CONNECTING = "connecting";
export const CONNECTED = "connected";
export const RECONNECTING = "reconnecting";
export const DISCONNECTED = "disconnected";

// Why the page must reload a channel's state from the REST API (the second argument of onReset).
export const RESET_BY_SERVER = "reset"; // the server no longer holds every event after our id
export const FIRST_SUBSCRIPTION = "first-subscription"; // nothing seen yet: events start after "now"
export const RESUBSCRIBED_ELSEWHERE = "resubscribed"; // the server answered with other ids than ours
export const GAP = "gap"; // an event id skipped some: something was lost in between

const POLICY_VIOLATION = 1008;
const NORMAL_CLOSURE = 1000;
// A server going away on purpose (uvicorn shutting down closes with 1012) is about to be back:
// for RESTART_WINDOW_MS the client retries within firstRetryMs, without spending its attempts,
// instead of backing off exponentially and coming back seconds after the server did.
const GOING_AWAY = 1001;
const SERVICE_RESTART = 1012;
const RESTART_WINDOW_MS = 30_000;
// A connection whose credential stopped admitting it. Revoked (the user deactivated, the API key
// revoked, the session ended) is final: the client reports it and never reconnects. Expired asks
// for a renewed token: the client connects again at once, with what `token()` gives now.
export const CREDENTIALS_REVOKED = 4401;
export const CREDENTIALS_EXPIRED = 4440;
// Until the server says otherwise in `authenticated` (its defaults, TARS_WS_PING_SECONDS and
// TARS_WS_PONG_TIMEOUT_SECONDS): an older server does not announce its heartbeat.
const DEFAULT_HEARTBEAT = { interval: 30, timeout: 10 };
// The server closes a connection that has not authenticated within 10 s; a socket that has not
// opened and authenticated a little after that is as good as dead.
const HANDSHAKE_TIMEOUT_MS = 15_000;

export class ReconnectingWebSocketClient {
  /**
   * @param {object} options
   * @param {string} options.url            ws:// or wss:// URL of /ws
   * @param {string | (() => string | Promise<string>)} options.token
   *        the bearer token, sent in the first frame (or a function giving the current one)
   * @param {string[]} [options.channels]   channels to subscribe to from the start
   * @param {(frame: object) => void} [options.onEvent]  each event once, in order, per channel
   * @param {(channel: string, cause: string) => void} [options.onReset]
   *        the page must reload this channel's state from REST; live events that follow apply on top
   * @param {(state: string, attempt: number) => void} [options.onStateChange]
   * @param {() => void} [options.onUnauthenticated]  the token was refused: retrying cannot help
   * @param {(reason: string, code: number) => void} [options.onRevoked]
   *        the server revoked the credential of an open connection: retrying cannot help
   * @param {number} [options.maxAttempts]  reconnection attempts before giving up (10)
   * @param {number} [options.firstRetryMs] the first retry happens within this (250 ms)
   * @param {number} [options.maxDelayMs]   no delay between attempts exceeds this (30 s)
   */
  constructor({
    url,
    token,
    channels = [],
    onEvent = () => {},
    onReset = () => {},
    onStateChange = () => {},
    onUnauthenticated = () => {},
    onRevoked = () => {},
    maxAttempts = 10,
    firstRetryMs = 250,
    maxDelayMs = 30_000,
  }) {
    this.url = url;
    this.token = token;
    this.onEvent = onEvent;
    this.onReset = onReset;
    this.onStateChange = onStateChange;
    this.onUnauthenticated = onUnauthenticated;
    this.onRevoked = onRevoked;
    this.maxAttempts = maxAttempts;
    this.firstRetryMs = firstRetryMs;
    this.maxDelayMs = maxDelayMs;

    this.channels = new Set(channels);
    // channel -> id of the last event applied; absent until the server has told us a starting point.
    this.lastIds = new Map();
    // channels whose `subscribed` we are waiting for on the current socket, with the id we sent
    this.pending = new Map();
    // channels the server said it must reset; the reset takes effect with the `subscribed` after it
    this.resetting = new Set();

    this.state = CONNECTING;
    this.shown = null; // the state and attempt onStateChange last reported
    this.attempt = 0;
    this.heartbeat = { ...DEFAULT_HEARTBEAT };
    this.socket = null;
    this.authenticated = false;
    this.stopped = true;
    this.refused = false;
    this.revoked = null; // { code, reason } of the close that revoked the credential
    this.retryTimer = null;
    this.watchdog = null;
    this.nextRetryDelayMs = null;
    this.restartDeadline = null; // until when a server-announced restart is being ridden out
    // What happened, for the page's diagnostics and for tests.
    this.stats = { connections: 0, events: 0, duplicates: 0, gaps: 0, resets: 0 };
  }

  /** Last event id seen per channel, as a plain object (tests and diagnostics read it). */
  get lastEventIds() {
    return Object.fromEntries(this.lastIds);
  }

  start() {
    this.stopped = false;
    this.attempt = 0;
    this.open(CONNECTING);
  }

  /** Closes for good (logging out); no hook fires afterwards. */
  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.dropSocket(NORMAL_CLOSURE, "client closed");
    this.setState(DISCONNECTED);
  }

  /** After `disconnected`: the user asked to try again, so the attempts start over. */
  retry() {
    if (this.refused) return; // the same token would be refused again
    clearTimeout(this.retryTimer);
    this.stopped = false;
    this.attempt = 0;
    this.dropSocket(NORMAL_CLOSURE, "retrying");
    this.open(CONNECTING);
  }

  subscribe(channel) {
    if (this.channels.has(channel)) return;
    this.channels.add(channel);
    if (this.authenticated) this.sendSubscribe(channel);
  }

  /** Stops a channel and forgets its position: subscribing again later starts from a fresh load. */
  unsubscribe(channel) {
    if (!this.channels.delete(channel)) return;
    this.lastIds.delete(channel);
    this.resetting.delete(channel);
    const wasPending = this.pending.delete(channel);
    if (this.authenticated) {
      this.send({ type: "unsubscribe", channel });
      if (wasPending) this.maybeConnected();
    }
  }

  // --- connection lifecycle -------------------------------------------------------------

  open(state) {
    this.setState(state);
    this.authenticated = false;
    this.pending.clear();
    this.resetting.clear();
    let socket;
    try {
      socket = new WebSocket(this.url);
    } catch (error) {
      // A malformed URL throws at once; treat it like a connection that failed.
      console.warn("live feed:", error.message);
      this.scheduleReconnect();
      return;
    }
    this.socket = socket;
    this.armWatchdog(HANDSHAKE_TIMEOUT_MS);
    socket.onopen = async () => {
      // The token may be a function: the page renews a short-lived token before each connection.
      const token = typeof this.token === "function" ? await this.token() : this.token;
      if (this.socket === socket) this.send({ type: "auth", token });
    };
    socket.onmessage = (message) => {
      if (this.socket !== socket) return;
      this.armWatchdog(this.authenticated ? this.silenceLimitMs() : HANDSHAKE_TIMEOUT_MS);
      let frame;
      try {
        frame = JSON.parse(message.data);
      } catch {
        console.warn("live feed: a frame that is not JSON:", message.data);
        return;
      }
      this.handle(frame);
    };
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.authenticated = false;
      clearTimeout(this.watchdog);
      if (this.stopped) return;
      if (event.code === POLICY_VIOLATION && event.reason === "unauthenticated") {
        // The token expired or was revoked; the protocol forbids retrying with it.
        this.stopped = true;
        this.refused = true;
        this.setState(DISCONNECTED);
        this.onUnauthenticated();
        return;
      }
      if (event.code === CREDENTIALS_REVOKED) {
        this.stopped = true;
        this.refused = true;
        this.revoked = { code: event.code, reason: event.reason };
        console.warn(`live feed: signed out: access revoked (${event.reason || "no reason given"})`);
        this.setState(DISCONNECTED);
        this.onRevoked(event.reason, event.code);
        return;
      }
      if (event.code === CREDENTIALS_EXPIRED) {
        // Not a failure: the token ran its course. No attempt spent, no backoff.
        this.attempt = 1;
        this.nextRetryDelayMs = 0;
        this.setState(RECONNECTING);
        this.retryTimer = setTimeout(() => this.open(RECONNECTING), 0);
        return;
      }
      if ((event.code === SERVICE_RESTART || event.code === GOING_AWAY) && this.state === CONNECTED) {
        this.restartDeadline = Date.now() + RESTART_WINDOW_MS;
      }
      this.scheduleReconnect();
    };
  }

  scheduleReconnect() {
    if (this.restartDeadline !== null && Date.now() < this.restartDeadline) {
      this.attempt = 1;
      this.nextRetryDelayMs = Math.random() * this.firstRetryMs;
      this.setState(RECONNECTING);
      this.retryTimer = setTimeout(() => this.open(RECONNECTING), this.nextRetryDelayMs);
      return;
    }
    this.restartDeadline = null;
    if (this.attempt >= this.maxAttempts) {
      this.nextRetryDelayMs = null;
      this.setState(DISCONNECTED);
      return;
    }
    this.attempt += 1;
    // Full jitter: anywhere between 0 and the exponential ceiling, so that many pages cut off by
    // the same server restart do not all come back in the same instant.
    const ceiling = Math.min(this.maxDelayMs, this.firstRetryMs * 2 ** (this.attempt - 1));
    this.nextRetryDelayMs = Math.random() * ceiling;
    this.setState(RECONNECTING);
    this.retryTimer = setTimeout(() => this.open(RECONNECTING), this.nextRetryDelayMs);
  }

  silenceLimitMs() {
    return (this.heartbeat.interval + this.heartbeat.timeout) * 1000;
  }

  // The server pings every `interval` seconds; hearing nothing at all for interval + timeout means
  // it (or the network to it) is gone even if the socket does not know it yet.
  armWatchdog(ms) {
    clearTimeout(this.watchdog);
    this.watchdog = setTimeout(() => {
      if (!this.socket) return;
      console.warn(`live feed: nothing heard for ${Math.round(ms / 1000)} s; reconnecting`);
      this.dropSocket(NORMAL_CLOSURE, "server silent");
      if (!this.stopped) this.scheduleReconnect();
    }, ms);
  }

  // Forgets the socket before closing it, so its late close event cannot schedule a second retry.
  dropSocket(code, reason) {
    clearTimeout(this.watchdog);
    const socket = this.socket;
    this.socket = null;
    this.authenticated = false;
    if (socket && socket.readyState <= WebSocket.OPEN) socket.close(code, reason);
  }

  // --- frames ---------------------------------------------------------------------------

  send(frame) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(frame));
  }

  sendSubscribe(channel) {
    const lastId = this.lastIds.get(channel);
    this.pending.set(channel, lastId);
    const frame = { type: "subscribe", channel };
    if (lastId != null) frame.last_event_id = lastId;
    this.send(frame);
  }

  handle(frame) {
    switch (frame.type) {
      case "authenticated":
        this.authenticated = true;
        this.stats.connections += 1;
        if (frame.heartbeat && frame.heartbeat.interval > 0 && frame.heartbeat.timeout > 0) {
          this.heartbeat = { interval: frame.heartbeat.interval, timeout: frame.heartbeat.timeout };
        }
        this.armWatchdog(this.silenceLimitMs());
        for (const channel of this.channels) this.sendSubscribe(channel);
        this.maybeConnected();
        break;
      case "subscribed":
        this.subscribed(frame);
        break;
      case "reset":
        if (this.channels.has(frame.channel)) this.resetting.add(frame.channel);
        break;
      case "event":
        this.event(frame);
        break;
      case "ping":
        this.send({ type: "pong" });
        break;
      case "pong":
      case "unsubscribed":
        break;
      case "error":
        console.warn("live feed: the server says:", frame.message);
        break;
      default:
        console.warn("live feed: unknown frame type", frame.type);
    }
  }

  subscribed(frame) {
    const channel = frame.channel;
    if (!this.channels.has(channel)) return; // unsubscribed meanwhile
    const sent = this.pending.has(channel) ? this.pending.get(channel) : this.lastIds.get(channel);
    this.pending.delete(channel);
    const answered = Number.isSafeInteger(frame.last_event_id) ? frame.last_event_id : null;
    let cause = null;
    if (this.resetting.delete(channel)) cause = RESET_BY_SERVER;
    else if (sent == null) cause = FIRST_SUBSCRIPTION;
    else if (answered !== sent) cause = RESUBSCRIBED_ELSEWHERE;
    if (cause !== null) {
      // Everything up to `answered` must come from REST; events after it come live. A server
      // that does not number its events leaves us no position, and we reload on every reconnect.
      if (answered === null) this.lastIds.delete(channel);
      else this.lastIds.set(channel, answered);
      if (cause === RESET_BY_SERVER) {
        this.stats.resets += 1;
        console.info(`live feed: the server no longer holds every event of ${channel} after ${sent}; reloading it`);
      }
      this.onReset(channel, cause);
    }
    this.maybeConnected();
  }

  event(frame) {
    const channel = frame.channel;
    if (!this.channels.has(channel)) return;
    const id = Number.isSafeInteger(frame.id) ? frame.id : null;
    const last = this.lastIds.get(channel);
    if (id !== null && last != null && id <= last) {
      this.stats.duplicates += 1;
      return;
    }
    const gap = id !== null && last != null && id > last + 1;
    if (id !== null) this.lastIds.set(channel, id);
    this.stats.events += 1;
    this.onEvent(frame);
    if (gap) {
      // The server promises none; if one happens anyway, the page's state is only right again
      // after a reload.
      this.stats.gaps += 1;
      console.warn(`live feed: events ${last + 1}..${id - 1} of ${channel} never arrived; reloading it`);
      this.onReset(channel, GAP);
    }
  }

  // "connected" only once every subscription is confirmed: from then on nothing can be missed.
  maybeConnected() {
    if (!this.authenticated || this.pending.size > 0 || this.state === CONNECTED) return;
    this.attempt = 0;
    this.nextRetryDelayMs = null;
    this.restartDeadline = null;
    this.setState(CONNECTED);
  }

  // Tells the page only what it has not been told: a state, or a new attempt number.
  setState(state) {
    this.state = state;
    const shown = `${state} ${this.attempt}`;
    if (shown === this.shown) return;
    this.shown = shown;
    this.onStateChange(state, this.attempt);
  }
}
