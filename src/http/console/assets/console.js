// dolphin-bridge console: enhancements only. Every page works without this script.
"use strict";

// Ask before a form that says so (cancelling a delivery).
document.addEventListener("submit", (event) => {
  const question = event.target.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

// Refresh the overview's figures in place while the tab is visible, unless paused. Panels
// (`<details>`) open before a refresh stay open after it, and nothing is replaced while the
// reader is typing in a form of the refreshed part.
const live = document.getElementById("live");
if (live) {
  const seconds = Number(live.getAttribute("data-refresh")) || 30;
  const toggle = document.getElementById("refresh-switch");
  const state = document.getElementById("refresh-state");
  let paused = window.sessionStorage.getItem("overview-refresh") === "paused";
  const show = () => {
    toggle.textContent = paused ? "Resume refresh" : "Pause refresh";
    toggle.setAttribute("aria-pressed", String(paused));
    state.textContent = paused ? "Refresh paused." : `Refreshes every ${seconds} s.`;
  };
  if (toggle && state) {
    toggle.hidden = false;
    state.hidden = false;
    show();
    toggle.addEventListener("click", () => {
      paused = !paused;
      window.sessionStorage.setItem("overview-refresh", paused ? "paused" : "running");
      show();
    });
  }
  const refresh = async () => {
    if (paused || document.visibilityState !== "visible") return;
    if (live.contains(document.activeElement) && document.activeElement.matches("input, select, textarea")) return;
    try {
      const response = await fetch(window.location.href, { credentials: "same-origin" });
      if (!response.ok || response.redirected || paused) return;
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = page.getElementById("live");
      if (!fresh) return;
      const open = new Set([...live.querySelectorAll("details[open][id]")].map((d) => d.id));
      for (const d of fresh.querySelectorAll("details[id]")) d.open = open.has(d.id);
      live.replaceChildren(...fresh.childNodes);
      live.setAttribute("data-refreshed", String(Date.now()));
    } catch (_) {
      // Offline for a moment: keep what is shown.
    }
  };
  setInterval(refresh, seconds * 1000);
  // The same refresh on demand (the browser tests use it rather than waiting 30 s).
  window.refreshOverview = refresh;
}
