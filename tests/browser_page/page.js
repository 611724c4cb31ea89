// Fetches the volume list and follows both WebSocket paths, writing what arrives into the
// page, where the browser tests read it. Served by the gateway through VV_STATIC_DIR.
function show(id, text) {
  document.getElementById(id).textContent = text;
}

async function rest() {
  const response = await fetch("/api/v1/volumes?page_size=1000");
  const body = await response.json();
  show("rest", response.ok ? `names: ${body.data.map((v) => v.name).join(",")}` : `status ${response.status}: ${body.error}`);
}

function follow(path, id) {
  const socket = new WebSocket(`ws://${window.location.host}${path}`);
  let updates = 0;
  socket.addEventListener("message", (event) => {
    const message = JSON.parse(event.data);
    if (message.type !== "volume_update") return;
    updates += 1;
    // /api/v1/ws carries the bare array; /ws an object holding it.
    const shape = Array.isArray(message.data) ? "array" : "object";
    const volumes = shape === "array" ? message.data : message.data.volumes;
    show(id, `updates: ${updates} shape: ${shape} names: ${volumes.map((v) => v.name).join(",")}`);
  });
  socket.addEventListener("close", (event) => show(id, `closed: ${event.code}`));
}

rest().catch((error) => show("rest", `failed: ${error}`));
follow("/api/v1/ws", "seed-ws");
follow("/ws", "dashboard-ws");
