// The REST API of this origin, and the session the page keeps for it.
//
// The tokens live in sessionStorage: they survive a reload of the tab but not the tab itself, and
// other tabs do not share them. The access token is short-lived (15 min by default); the refresh
// token renews it, once per use, as requests need it.

const TOKEN_KEY = "tars.token";
const REFRESH_KEY = "tars.refresh";
const ROLES = ["viewer", "operator", "admin"];
// A token this close to its expiry is renewed before use rather than sent to be refused.
const RENEW_MARGIN_MS = 30_000;

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** Who is logged in, read from the token's own claims (the server checks them on every request). */
export function readSession() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return null;
  const claims = tokenClaims(token);
  const expired = !claims || (claims.exp && claims.exp * 1000 <= Date.now());
  if (expired && !sessionStorage.getItem(REFRESH_KEY)) {
    forgetToken();
    return null;
  }
  return { token, username: claims.name || "", role: ROLES.includes(claims.role) ? claims.role : "viewer" };
}

export function saveTokens({ access_token, refresh_token }) {
  sessionStorage.setItem(TOKEN_KEY, access_token);
  if (refresh_token) sessionStorage.setItem(REFRESH_KEY, refresh_token);
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(REFRESH_KEY);
}

let renewing = null;

/**
 * Exchange the refresh token for a new pair; resolves true when the session goes on. Calls made
 * together share one exchange: a refresh token works once, and a second use would end the session.
 */
export function renewSession() {
  if (!renewing) {
    renewing = exchangeRefreshToken().finally(() => {
      renewing = null;
    });
  }
  return renewing;
}

async function exchangeRefreshToken() {
  const refresh_token = sessionStorage.getItem(REFRESH_KEY);
  if (!refresh_token) return false;
  let response;
  try {
    response = await fetch("/api/v1/auth/refresh", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ refresh_token }),
    });
  } catch {
    return false;
  }
  if (!response.ok) {
    if (response.status === 401) forgetToken();
    return false;
  }
  saveTokens(await response.json());
  return true;
}

/** An access token good for the next little while, renewed first if it is about to run out. */
export async function currentToken() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const claims = token && tokenClaims(token);
  if (claims && claims.exp && claims.exp * 1000 - Date.now() < RENEW_MARGIN_MS) await renewSession();
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

/** Operators and admins may start training and submit evaluations. */
export function canOperate(session) {
  return session != null && ROLES.indexOf(session.role) >= ROLES.indexOf("operator");
}

function tokenClaims(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = new TextDecoder().decode(Uint8Array.from(atob(payload), (c) => c.charCodeAt(0)));
    return JSON.parse(json);
  } catch {
    return null;
  }
}

/** Called when the server refuses the token (401): the page goes back to the login form. */
let onUnauthorized = () => {};
export function whenUnauthorized(handler) {
  onUnauthorized = handler;
}

/**
 * One request to the API; resolves with the parsed JSON body, rejects with an ApiError whose
 * message is the server's own explanation when it gives one.
 */
export async function api(path, { method = "GET", body, query, signal } = {}) {
  let url = path;
  if (query) {
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(query)) {
      if (value !== undefined && value !== null && value !== "") params.set(name, String(value));
    }
    const text = params.toString();
    if (text) url += `?${text}`;
  }
  const anonymous = path.startsWith("/api/v1/auth/") && path !== "/api/v1/auth/logout";
  let response;
  for (let attempt = 0; attempt < 2; attempt += 1) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const token = anonymous ? "" : await currentToken();
    if (token) headers.Authorization = `Bearer ${token}`;
    try {
      response = await fetch(url, { method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError(0, "the server cannot be reached");
    }
    // Refused: the access token ran out early, or was revoked. One renewal, then the login form.
    if (response.status !== 401 || anonymous || attempt > 0 || !(await renewSession())) break;
  }
  if (response.status === 401 && !anonymous) {
    onUnauthorized("Your session has ended; log in again.");
    throw new ApiError(401, "not logged in");
  }
  if (response.status === 204) return null;
  const payload = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, describeError(response, payload));
  return payload;
}

// FastAPI answers {"detail": "..."} or, for validation errors, {"detail": [{"loc": [...], "msg": ...}]}.
function describeError(response, payload) {
  const detail = payload && payload.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail) && detail.length) {
    return detail
      .map((problem) => {
        const where = (problem.loc || []).filter((part) => part !== "body" && part !== "query").join(".");
        return where ? `${where}: ${problem.msg}` : problem.msg;
      })
      .join("; ");
  }
  if (payload && typeof payload.message === "string") return payload.message;
  return `${response.status} ${response.statusText}`.trim();
}

export async function login(username, password) {
  const body = await api("/api/v1/auth/login", { method: "POST", body: { username, password } });
  saveTokens(body);
  return readSession();
}

/** End the session on the server too: its tokens stop working everywhere, not just in this tab. */
export async function logout() {
  if (sessionStorage.getItem(TOKEN_KEY)) {
    const refresh_token = sessionStorage.getItem(REFRESH_KEY) || undefined;
    await api("/api/v1/auth/logout", { method: "POST", body: refresh_token ? { refresh_token } : {} }).catch(() => {});
  }
  forgetToken();
}
