// Materials of a consultation: drag-and-drop upload with progress (one file at a time from
// a queue), the list with previews, and the DICOM viewer for DICOM files.

import { t } from "/i18n.js";
import { get, upload } from "/workspace/api.js";
import { describe, h, time } from "/workspace/dom.js";
import { openViewer } from "/workspace/dicom.js";

const CLOSED = new Set(["closed", "rejected", "cancelled"]);

export function sizeText(bytes) {
  if (bytes >= 1024 ** 3) return `${(bytes / 1024 ** 3).toFixed(1)} GB`;
  if (bytes >= 1024 ** 2) return `${(bytes / 1024 ** 2).toFixed(1)} MB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(0)} KB`;
  return `${bytes} B`;
}

function materialItem(m, viewerHolder) {
  const preview = m.preview
    ? h("img", { src: `/api/v1/materials/${m.id}/preview`, alt: m.filename, loading: "lazy",
      class: "thumb", "data-testid": "material-preview" })
    : h("span", { class: "thumb placeholder" }, m.kind.toUpperCase());
  const view = m.kind === "dicom"
    ? h("button", { type: "button", "data-testid": "open-viewer", onclick: () => openViewer(m, viewerHolder) },
      t("ws.dicom.open"))
    : null;
  const dicom = m.dicom ?? {};
  return h("li", { class: "material", "data-testid": "material-item", "data-id": m.id, "data-kind": m.kind },
    preview,
    h("div", { class: "material-info" },
      h("a", { href: `/api/v1/materials/${m.id}`, "data-testid": "material-download",
        class: "filename" }, m.filename),
      h("span", { class: "muted small" }, [t(`ws.kind.${m.kind}`), sizeText(m.size),
        m.modality ?? dicom.modality, m.frames > 1 ? t("ws.dicom.frames", { n: m.frames }) : null,
        time(m.created_at)].filter(Boolean).join(" · "))),
    view);
}

export function materialsSection(c) {
  const list = h("ul", { class: "materials", "data-testid": "materials-list" });
  const viewerHolder = h("div", { class: "viewer-holder", "data-testid": "viewer-holder" });
  const queue = h("ul", { class: "queue", "data-testid": "upload-queue" });
  const refresh = async () => {
    const found = await get(`/api/v1/consultations/${c.id}/materials`);
    list.replaceChildren(...found.materials.map((m) => materialItem(m, viewerHolder)));
    if (!found.materials.length) list.append(h("li", { class: "empty", "data-testid": "materials-empty" }, t("ws.materials.empty")));
  };
  refresh().catch((error) => list.replaceChildren(h("li", { class: "error" }, describe(error))));

  const section = h("section", { class: "card", "data-testid": "materials" },
    h("h2", {}, t("ws.materials.title")));
  if (!CLOSED.has(c.state)) section.append(dropZone(c, queue, refresh));
  section.append(queue, list, viewerHolder);
  return section;
}

function dropZone(c, queue, refresh) {
  const input = h("input", { type: "file", multiple: true, id: "file-input", "data-testid": "file-input",
    class: "visually-hidden", accept: ".dcm,application/dicom,image/jpeg,image/png,application/pdf" });
  const zone = h("label", { class: "dropzone", for: "file-input", "data-testid": "dropzone", tabindex: 0 },
    h("strong", {}, t("ws.materials.drop")), h("span", { class: "muted" }, t("ws.materials.types")), input);
  const pending = [];
  let running = false;
  const enqueue = (files) => {
    for (const file of files) {
      const bar = h("progress", { max: 100, value: 0, "data-testid": "upload-progress" });
      const status = h("span", { class: "status", "data-testid": "upload-status" }, t("ws.materials.waiting"));
      const item = h("li", { "data-testid": "upload-item", "data-state": "waiting" },
        h("span", { class: "filename" }, file.name), h("span", { class: "muted small" }, sizeText(file.size)), bar, status);
      queue.append(item);
      pending.push({ file, bar, status, item });
    }
    drain();
  };
  const drain = async () => {
    if (running) return;
    running = true;
    while (pending.length) {
      const job = pending.shift();
      job.item.dataset.state = "uploading";
      job.status.textContent = t("ws.materials.uploading");
      try {
        await upload(`/api/v1/consultations/${c.id}/materials`, job.file, (fraction) => {
          job.bar.value = Math.round(fraction * 100);
          job.status.textContent = `${Math.round(fraction * 100)}%`;
        });
        job.item.dataset.state = "done";
        job.status.textContent = t("ws.materials.done");
        await refresh();
      } catch (error) {
        job.item.dataset.state = "failed";
        job.item.dataset.code = error.code ?? "";
        job.item.classList.add("failed");
        job.status.textContent = describe(error);
      }
    }
    running = false;
  };
  input.addEventListener("change", () => { enqueue([...input.files]); input.value = ""; });
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); input.click(); }
  });
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (event) => { event.preventDefault(); zone.classList.add("over"); });
  }
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    enqueue([...event.dataTransfer.files]);
  });
  return zone;
}
