// The REST API of this origin, and the session the page keeps for it.
//
// The token lives in sessionStorage: it survives a reload of the tab but not the tab itself, and
// other tabs do not share it.

const TOKEN_KEY = "tars.token";
const ROLES = ["viewer", "operator", "admin"];

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
  if (!claims || (claims.exp && claims.exp * 1000 <= Date.now())) {
    sessionStorage.removeItem(TOKEN_KEY);
    return null;
  }
  return { token, username: claims.name || "", role: ROLES.includes(claims.role) ? claims.role : "viewer" };
}

export function saveToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
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
  const session = readSession();
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (session) headers.Authorization = `Bearer ${session.token}`;
  let url = path;
  if (query) {
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(query)) {
      if (value !== undefined && value !== null && value !== "") params.set(name, String(value));
    }
    const text = params.toString();
    if (text) url += `?${text}`;
  }
  let response;
  try {
    response = await fetch(url, { method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "the server cannot be reached");
  }
  if (response.status === 401 && path !== "/api/v1/auth/login") {
    onUnauthorized("Your session has ended; log in again.");
    throw new ApiError(401, "not logged in");
  }
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
  saveToken(body.access_token);
  return readSession();
}
