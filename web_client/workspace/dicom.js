// The DICOM viewer: one frame at a time from the server, rendered with the chosen
// window/level (GET /api/v1/materials/{id}/frames/{n}?center=&width=). Frame slider,
// presets, sliders, and dragging on the image (horizontal: width, vertical: level).

import { t } from "/i18n.js";
import { h } from "/workspace/dom.js";

export const PRESETS = {
  default: null,
  lung: { center: -600, width: 1500 },
  mediastinum: { center: 40, width: 400 },
  bone: { center: 400, width: 1800 },
  brain: { center: 40, width: 80 },
  abdomen: { center: 50, width: 350 },
};

export function frameUrl(id, frame, center, width) {
  const query = new URLSearchParams({ center: String(Math.round(center)), width: String(Math.max(1, Math.round(width))) });
  return `/api/v1/materials/${id}/frames/${frame}?${query}`;
}

export function openViewer(material, holder) {
  const frames = Math.max(1, Number(material.frames ?? 1));
  const defaults = material.window ?? { center: 40, width: 400 };
  const state = { frame: 0, center: Number(defaults.center), width: Number(defaults.width) };
  const image = h("img", { class: "dicom-image", alt: material.filename, "data-testid": "dicom-image", draggable: "false" });
  const frameSlider = h("input", { type: "range", min: 0, max: frames - 1, value: 0, "data-testid": "frame-slider",
    disabled: frames < 2 });
  const frameLabel = h("span", { "data-testid": "frame-label" });
  const center = h("input", { type: "range", min: -1200, max: 3000, value: state.center, "data-testid": "level-slider" });
  const width = h("input", { type: "range", min: 1, max: 4000, value: state.width, "data-testid": "width-slider" });
  const readout = h("span", { class: "muted", "data-testid": "window-readout" });
  const failure = h("p", { class: "error", hidden: true, "data-testid": "viewer-error" });
  let timer = null;

  const render = () => {
    frameLabel.textContent = t("ws.dicom.frame", { n: state.frame + 1, total: frames });
    readout.textContent = t("ws.dicom.window", { center: Math.round(state.center), width: Math.round(state.width) });
    clearTimeout(timer);
    timer = setTimeout(() => { image.src = frameUrl(material.id, state.frame, state.center, state.width); }, 60);
  };
  image.addEventListener("load", () => { failure.hidden = true; image.dataset.loaded = image.src; });
  image.addEventListener("error", () => {
    failure.hidden = false;
    failure.textContent = t("ws.dicom.failed");
    if (material.preview && !image.src.endsWith("/preview")) image.src = `/api/v1/materials/${material.id}/preview`;
  });
  frameSlider.addEventListener("input", () => { state.frame = Number(frameSlider.value); render(); });
  center.addEventListener("input", () => { state.center = Number(center.value); render(); });
  width.addEventListener("input", () => { state.width = Number(width.value); render(); });

  const presets = Object.entries(PRESETS).map(([name, preset]) => h("button", {
    type: "button", class: "chip", "data-testid": `preset-${name}`,
    onclick: () => {
      const chosen = preset ?? defaults;
      state.center = Number(chosen.center); state.width = Number(chosen.width);
      center.value = state.center; width.value = state.width;
      render();
    } }, t(`ws.dicom.preset.${name}`)));

  let drag = null;
  image.addEventListener("pointerdown", (event) => {
    drag = { x: event.clientX, y: event.clientY, center: state.center, width: state.width };
    image.setPointerCapture(event.pointerId);
  });
  image.addEventListener("pointermove", (event) => {
    if (!drag) return;
    state.width = Math.max(1, drag.width + (event.clientX - drag.x) * 4);
    state.center = drag.center + (event.clientY - drag.y) * 2;
    center.value = state.center; width.value = state.width;
    render();
  });
  image.addEventListener("pointerup", () => { drag = null; });
  image.addEventListener("wheel", (event) => {
    if (frames < 2) return;
    event.preventDefault();
    state.frame = Math.min(frames - 1, Math.max(0, state.frame + Math.sign(event.deltaY)));
    frameSlider.value = state.frame;
    render();
  }, { passive: false });

  const viewer = h("section", { class: "viewer", "data-testid": "dicom-viewer", "data-material": material.id },
    h("div", { class: "row-between" }, h("h3", {}, material.filename),
      h("button", { type: "button", class: "subtle", "data-testid": "close-viewer",
        onclick: () => holder.replaceChildren() }, t("ws.close"))),
    h("div", { class: "viewer-body" }, h("div", { class: "dicom-stage" }, image),
      h("div", { class: "viewer-controls" },
        h("label", { class: "field" }, h("span", { class: "label" }, t("ws.dicom.frame-label")), frameSlider, frameLabel),
        h("div", { class: "chips" }, presets),
        h("label", { class: "field" }, h("span", { class: "label" }, t("ws.dicom.level")), center),
        h("label", { class: "field" }, h("span", { class: "label" }, t("ws.dicom.width")), width),
        readout, h("p", { class: "muted small" }, t("ws.dicom.drag-help")), failure)));
  holder.replaceChildren(viewer);
  render();
  viewer.scrollIntoView({ behavior: "smooth", block: "start" });
}
