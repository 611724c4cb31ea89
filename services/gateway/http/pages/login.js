// The login page: trades the API token for a session cookie (HttpOnly: this script never
// sees it), then goes back to the page the browser was sent here from.
const SESSION_URL = "/api/v1/session";

function nextPage() {
  // Only a page of this origin: the browser's own URL parser decides ("/\t/elsewhere" and
  // "//elsewhere" name another site), never a string check.
  const next = new URLSearchParams(window.location.search).get("next") || "/";
  const target = new URL(next, window.location.origin);
  return target.origin === window.location.origin ? target.pathname + target.search + target.hash : "/";
}

function say(text, isError = false) {
  const message = document.getElementById("message");
  message.textContent = text;
  message.classList.toggle("error", isError);
}

async function errorText(response) {
  try {
    const body = await response.json();
    return body.error || body.message || `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

async function showState() {
  const response = await fetch(SESSION_URL, { headers: { Accept: "application/json" } });
  const state = response.ok ? await response.json() : { authenticated: false };
  document.getElementById("login").hidden = state.authenticated;
  document.getElementById("signed-in").hidden = !state.authenticated;
  document.getElementById("continue").href = nextPage();
  if (!state.token_required) say("This server needs no token.");
}

async function logIn(event) {
  event.preventDefault();
  const token = document.getElementById("token").value;
  const response = await fetch(SESSION_URL, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify({ token }),
  });
  if (response.ok) {
    window.location.assign(nextPage());
  } else {
    say(await errorText(response), true);
  }
}

async function logOut() {
  const response = await fetch(SESSION_URL, { method: "DELETE" });
  if (response.ok) {
    say("Logged out.");
    await showState();
  } else {
    say(await errorText(response), true);
  }
}

document.getElementById("login").addEventListener("submit", logIn);
document.getElementById("logout").addEventListener("click", logOut);
showState().catch((error) => say(String(error), true));
