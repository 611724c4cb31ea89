// REST calls. The session cookie (from the login page) goes along by itself.
export class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.error || body.message)) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code;
  }
}

async function call(path, options = {}) {
  const response = await fetch(`/api/v1${path}`, {
    ...options,
    headers: { Accept: "application/json", ...(options.body ? { "Content-Type": "application/json" } : {}) },
  });
  if (response.status === 401) {
    window.location.assign(`/login?next=${encodeURIComponent(window.location.pathname + window.location.hash)}`);
  }
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

const volume = (id) => `/volumes/${encodeURIComponent(id)}`;

export const api = {
  orphaned: () => call("/reports/orphaned?page_size=1"),
  volume: (id) => call(volume(id)),
  scan: (id) => call(`${volume(id)}/size/refresh`, { method: "POST", body: JSON.stringify({ async: true }) }),
  scanJob: (scanId) => call(`/scans/${encodeURIComponent(scanId)}`),
  scanAll: () => call("/scans/all", { method: "POST", body: "{}" }),
  tree: (id, path) => call(`${volume(id)}/tree?depth=1&limit=200&path=${encodeURIComponent(path)}`),
  largest: (id) => call(`${volume(id)}/largest-files?limit=20`),
  changes: (id) => call(`${volume(id)}/tree/changes?limit=20`),
  history: (id) => call(`${volume(id)}/history?limit=1000`),
  forecast: (id) => call(`${volume(id)}/forecast?days=30`),
};
