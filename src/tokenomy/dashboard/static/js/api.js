// Page data from /ui/api, authenticated by the session cookie. A 401 asks for the login.
export class LoginRequired extends Error {}

export async function api(path, options = {}) {
  const init = { credentials: "same-origin", headers: { accept: "application/json" }, ...options };
  if (init.body !== undefined) {
    init.headers = { ...init.headers, "content-type": "application/json", "x-tokenomy-ui": "1" };
    init.body = JSON.stringify(init.body);
  }
  const response = await fetch(path, init);
  if (response.status === 401) throw new LoginRequired();
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const message = data.error ? data.error.message : `${response.status} ${response.statusText}`;
    throw new Error(message);
  }
  return data;
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(key, value);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}
