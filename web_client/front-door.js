// The start page leads people to the consultation workspace (sign-in, requests, reports):
// the media server says where the records service's pages are.

async function showFrontDoor() {
  try {
    const response = await fetch("/api/v1/front-door", { headers: { Accept: "application/json" } });
    if (!response.ok) return;
    const { workspace_url: url } = await response.json();
    if (typeof url !== "string" || !/^https?:\/\//.test(url)) return;
    document.getElementById("workspace-link").href = url;
    document.getElementById("front-door").hidden = false;
  } catch {
    /* the page stays as it is */
  }
}

showFrontDoor();
