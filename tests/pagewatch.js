// Put into a scrubber page by tests/test_page.py and bench/page.py: records every picture
// the page puts on #frame (canvas or <img>), with the frame index read from its pixels
// (the 3 x 8 cells of samples.PatternPainter over the top half, as samples.read_index).
(() => {
  const el = document.getElementById("frame");
  const probe = document.createElement("canvas");
  window.__shown = [];
  function pixels() {
    let source = el;
    if (!(el instanceof HTMLCanvasElement)) {
      probe.width = el.naturalWidth;
      probe.height = el.naturalHeight;
      probe.getContext("2d").drawImage(el, 0, 0);
      source = probe;
    }
    const w = source.width;
    const h = source.height;
    const band = Math.floor(h / 2);
    const data = source.getContext("2d").getImageData(0, 0, w, Math.max(band, 1)).data;
    let value = 0;
    for (let bit = 0; bit < 24; bit++) {
      const row = bit >> 3;
      const col = bit & 7;
      const y0 = Math.floor((row * band) / 3), y1 = Math.floor(((row + 1) * band) / 3);
      const x0 = Math.floor((col * w) / 8), x1 = Math.floor(((col + 1) * w) / 8);
      const my = (y1 - y0) >> 2, mx = (x1 - x0) >> 2;
      let sum = 0, count = 0;
      for (let y = y0 + my; y < y1 - my; y += 2)
        for (let x = x0 + mx; x < x1 - mx; x += 2) {
          const i = (y * w + x) * 4;
          sum += 0.299 * data[i] + 0.587 * data[i + 1] + 0.114 * data[i + 2];
          count++;
        }
      value = (value << 1) | (sum / Math.max(count, 1) > 128 ? 1 : 0);
    }
    return value;
  }
  new MutationObserver(() => {
    // at: when it was drawn; refresh: the time of the animation frame it was drawn in (for draws
    // made by requestAnimationFrame callbacks, the refresh that shows it)
    const entry = { frame: Number(el.dataset.frame), kind: el.dataset.kind || "frame", at: performance.now(), refresh: document.timeline.currentTime };
    entry.pixels = pixels();
    window.__shown.push(entry);
  }).observe(el, { attributes: true, attributeFilter: ["data-frame"] });
})();
