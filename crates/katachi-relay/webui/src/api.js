// The agent's API as the relay forwards it: `/agents/{id}/api/v1/...`, same origin, session cookie.
// Every failure becomes an `ApiError` carrying the `{"error":{"code","message"}}` the relay or the
// agent answered, or a clear message when there was no such answer.

/** A failed call: `code` is the API's stable code (`agent.offline`, `file.too_large`, …). */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }

  /** True when the agent itself cannot be reached (the whole workbench waits for it). */
  get agentGone() {
    return this.code === "agent.offline" || this.code === "agent.unreachable" || this.code === "network.failed";
  }
}

/** Reads an error body; a body that is not the JSON error shape still gives a readable message. */
async function errorOf(response) {
  let code = "http." + response.status;
  let text = `the agent answered HTTP ${response.status}`;
  try {
    const body = await response.json();
    if (body && body.error && typeof body.error.message === "string") {
      code = String(body.error.code || code);
      text = body.error.message;
    }
  } catch (_) { /* not JSON: keep the generic message */ }
  if (response.status === 401) { text = `${text} (your session ended: reload the page to sign in again)`; }
  return new ApiError(response.status, code, text);
}

/** A query string from an object, skipping empty values. */
export function query(params) {
  const parts = [];
  for (const [name, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === "") { continue; }
    parts.push(`${encodeURIComponent(name)}=${encodeURIComponent(String(value))}`);
  }
  return parts.length ? `?${parts.join("&")}` : "";
}

/** A client for one agent. */
export class AgentApi {
  constructor(agentId) {
    this.base = `/agents/${encodeURIComponent(agentId)}/api/v1`;
  }

  /** Sends a request; the `Response` when it succeeded, an `ApiError` thrown otherwise. */
  async send(path, init) {
    let response;
    try {
      response = await fetch(this.base + path, { credentials: "same-origin", cache: "no-store", ...init });
    } catch (e) {
      throw new ApiError(0, "network.failed", "the relay cannot be reached (network error); check your connection and retry");
    }
    if (!response.ok) { throw await errorOf(response); }
    return response;
  }

  /** GET returning JSON. */
  async json(path) {
    const response = await this.send(path, { headers: { Accept: "application/json" } });
    try {
      return await response.json();
    } catch (e) {
      throw new ApiError(response.status, "response.invalid", "the agent sent an answer that is not JSON");
    }
  }

  workspaces() { return this.json("/workspaces"); }

  tree(ws, path, cursor) {
    return this.json(`/workspaces/${ws}/tree${query({ path, depth: 1, limit: 200, cursor })}`);
  }

  /** A whole file: its bytes, and the hash a later write must name. */
  async file(ws, path, signal) {
    const response = await this.send(`/workspaces/${ws}/file${query({ path })}`, { signal });
    const bytes = new Uint8Array(await response.arrayBuffer());
    return { bytes, sha256: response.headers.get("x-katachi-sha256") };
  }

  /** Replaces a file if it is still the version hashed `expected`. */
  async write(ws, path, expected, text) {
    const response = await this.send(`/workspaces/${ws}/file${query({ path, expected })}`, {
      method: "PUT",
      headers: { "Content-Type": "application/octet-stream", Accept: "application/json" },
      body: new TextEncoder().encode(text),
    });
    return response.json();
  }

  gitStatus(ws) { return this.json(`/workspaces/${ws}/git/status`); }

  gitDiff(ws, path) {
    return this.json(`/workspaces/${ws}/git/diff${query({ path, include_untracked: "true" })}`);
  }
}
