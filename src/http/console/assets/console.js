// dolphin-bridge console: enhancements only. Every page works without this script.
"use strict";

// Ask before a form that says so (cancelling a delivery).
document.addEventListener("submit", (event) => {
  const question = event.target.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

// Refresh the overview's figures in place while the tab is visible.
const live = document.getElementById("live");
if (live) {
  const seconds = Number(live.getAttribute("data-refresh")) || 30;
  setInterval(async () => {
    if (document.visibilityState !== "visible") return;
    try {
      const response = await fetch(window.location.href, { credentials: "same-origin" });
      if (!response.ok || response.redirected) return;
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = page.getElementById("live");
      if (fresh) live.replaceChildren(...fresh.childNodes);
    } catch (_) {
      // Offline for a moment: keep what is shown.
    }
  }, seconds * 1000);
}
