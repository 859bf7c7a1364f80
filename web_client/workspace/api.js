// The one JSON API for pages (same origin, the session cookie). Unsafe methods carry the
// session's X-CSRF-Token. Errors become {status, code, message} (ApiError); a 401 outside
// sign-in sends the person back to the sign-in page.

const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);
let csrfToken = null;

export class ApiError extends Error {
  constructor(status, code, message, body = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

export function setCsrf(token) {
  csrfToken = token;
}

export function csrf() {
  return csrfToken;
}

function signedOut() {
  window.dispatchEvent(new CustomEvent("huizhen:signed-out"));
}

async function failure(response) {
  let body = {};
  try { body = await response.json(); } catch { /* not JSON */ }
  return new ApiError(response.status, body.code ?? `http-${response.status}`,
    body.error ?? response.statusText, body);
}

/** api("GET", "/api/v1/consultations", null, {query: {state: "requested"}}) → JSON|null */
export async function api(method, path, body = null, { query = null, quiet401 = false } = {}) {
  const url = new URL(path, location.origin);
  for (const [name, value] of Object.entries(query ?? {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  const headers = { Accept: "application/json" };
  if (body !== null) headers["Content-Type"] = "application/json";
  if (UNSAFE.has(method) && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  let response;
  try {
    response = await fetch(url, {
      method, headers, credentials: "same-origin",
      body: body === null ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "network", "network error");
  }
  if (!response.ok) {
    const error = await failure(response);
    if (response.status === 401 && !quiet401) signedOut();
    throw error;
  }
  if (response.status === 204) return null;
  const type = response.headers.get("Content-Type") ?? "";
  return type.includes("json") ? response.json() : response.text();
}

export const get = (path, query) => api("GET", path, null, { query });
export const post = (path, body = {}) => api("POST", path, body);
export const patch = (path, body) => api("PATCH", path, body);
export const del = (path) => api("DELETE", path);

/**
 * Upload one file as the raw request body (name in X-Filename, percent-encoded UTF-8),
 * reporting progress (0..1) through onProgress. Resolves with the material JSON.
 */
export function upload(path, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    xhr.withCredentials = true;
    xhr.setRequestHeader("X-Filename", encodeURIComponent(file.name));
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.setRequestHeader("Accept", "application/json");
    if (csrfToken) xhr.setRequestHeader("X-CSRF-Token", csrfToken);
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    xhr.addEventListener("load", () => {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(1);
        resolve(body);
      } else {
        if (xhr.status === 401) signedOut();
        reject(new ApiError(xhr.status, body.code ?? `http-${xhr.status}`, body.error ?? ""));
      }
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, "network", "network error")));
    xhr.addEventListener("abort", () => reject(new ApiError(0, "aborted", "aborted")));
    xhr.send(file);
  });
}
