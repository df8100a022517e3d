// The viewer of reports/index.html (pipeline/evaluate/page.py), inlined in the page: no library, no network.
// It reads the page's JSON data (arrays packed as base64 little-endian bytes), draws per instance the input
// crop with its keypoints, the predicted mesh's wireframe over the crop, and a WebGL view of the predicted
// and true meshes (drag to rotate, double-click to reset) coloured by vertex error or learnt part; and the
// template coloured by its learnt parts.
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("report-data").textContent);
  const BACKGROUND = [0.96, 0.96, 0.96];  // the 3D views' clear colour (the tests read it at a corner)
  const VIEW = 280;                       // CSS pixels of one 3D panel's width (height: 1.2 times)
  const CROP_VIEW = 240;                  // CSS pixels of a crop's long side
  const GREY = [0.7, 0.7, 0.7];
  const VIRIDIS = [[68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142], [31, 158, 137],
                   [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37]];
  const state = {mode: DATA.ground_truth ? "error" : "part", truthOverlay: false, views: [], crops: []};

  // --- data --------------------------------------------------------------------------------------------
  function decode(packed) {
    if (!packed) return null;
    const text = atob(packed.data);
    const bytes = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
    const Type = {float32: Float32Array, uint32: Uint32Array, uint8: Uint8Array}[packed.dtype];
    return new Type(bytes.buffer);
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "style") node.style.cssText = v; else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c);
    return node;
  }

  function viridis(t) {
    const x = Math.min(Math.max(t, 0), 1) * (VIRIDIS.length - 1);
    const i = Math.min(Math.floor(x), VIRIDIS.length - 2), f = x - i;
    return VIRIDIS[i].map((a, k) => (a + f * (VIRIDIS[i + 1][k] - a)) / 255);
  }

  function hexRgb(hex) {
    return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16) / 255);
  }

  function vertexColours(n, colourOf) {
    const out = new Float32Array(3 * n);
    for (let v = 0; v < n; v++) out.set(colourOf(v), 3 * v);
    return out;
  }

  const FACES = decode(DATA.faces);
  const PART = DATA.parts ? decode(DATA.parts.vertex) : null;
  const PART_RGB = DATA.parts ? DATA.parts.colours.map(hexRgb) : [];

  function partColours(n) {
    return vertexColours(n, (v) => (PART ? PART_RGB[PART[v]] : GREY));
  }

  function errorsMm(pred, truth) {
    const out = new Float32Array(pred.length / 3);
    for (let v = 0; v < out.length; v++) {
      const dx = pred[3 * v] - truth[3 * v], dy = pred[3 * v + 1] - truth[3 * v + 1];
      const dz = pred[3 * v + 2] - truth[3 * v + 2];
      out[v] = 1000 * Math.sqrt(dx * dx + dy * dy + dz * dz);
    }
    return out;
  }

  function vertexNormals(pos) {
    const nrm = new Float32Array(pos.length);
    for (let f = 0; f < FACES.length; f += 3) {
      const [a, b, c] = [3 * FACES[f], 3 * FACES[f + 1], 3 * FACES[f + 2]];
      const u = [0, 1, 2].map((k) => pos[b + k] - pos[a + k]), w = [0, 1, 2].map((k) => pos[c + k] - pos[a + k]);
      const n = [u[1] * w[2] - u[2] * w[1], u[2] * w[0] - u[0] * w[2], u[0] * w[1] - u[1] * w[0]];
      for (const i of [a, b, c]) for (let k = 0; k < 3; k++) nrm[i + k] += n[k];
    }
    return nrm;  // area-weighted, normalised in the shader
  }

  function centreRadius(pos) {
    const n = pos.length / 3, c = [0, 0, 0];
    for (let v = 0; v < n; v++) for (let k = 0; k < 3; k++) c[k] += pos[3 * v + k] / n;
    let r = 0;
    for (let v = 0; v < n; v++) {
      r = Math.max(r, Math.hypot(pos[3 * v] - c[0], pos[3 * v + 1] - c[1], pos[3 * v + 2] - c[2]));
    }
    return {centre: c, radius: r};
  }

  // --- the WebGL view: meshes side by side, one viewport each, the same rotation and scale ------------
  const VERTEX_SHADER = `
    attribute vec3 aPos; attribute vec3 aNormal; attribute vec3 aColour;
    uniform mat3 uRot; uniform vec3 uCentre; uniform vec3 uScale;
    varying vec3 vColour; varying float vShade;
    void main() {
      vec3 p = uRot * (aPos - uCentre);
      gl_Position = vec4(p.x * uScale.x, p.y * uScale.y, -p.z * uScale.z, 1.0);
      vec3 n = normalize(uRot * aNormal);
      vShade = 0.35 + 0.65 * abs(n.z);  // a headlight, both sides lit
      vColour = aColour;
    }`;
  const FRAGMENT_SHADER = `
    precision mediump float;
    varying vec3 vColour; varying float vShade;
    void main() { gl_FragColor = vec4(vColour * vShade, 1.0); }`;

  function cross(a, b) { return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]; }
  function unit(a) { const l = Math.hypot(...a) || 1; return a.map((x) => x / l); }
  function matmul(a, b) {  // 3x3, row-major
    return [0, 1, 2].map((i) => [0, 1, 2].map((j) => a[i][0] * b[0][j] + a[i][1] * b[1][j] + a[i][2] * b[2][j]));
  }

  class MeshView {
    // meshes: [{pos: Float32Array (3N), colours: {mode: Float32Array (3N)}}]; frame: {up, forward} of the shapes
    constructor(canvas, meshes, frame) {
      this.canvas = canvas;
      this.meshes = meshes;
      const up = unit(frame.up), forward = unit(frame.forward);
      this.basis = [unit(cross(up, forward)), up, forward];  // world -> (right, up, towards the viewer)
      this.yaw = 0; this.pitch = 0;
      const opts = {preserveDrawingBuffer: true, antialias: true};  // screenshots read the last frame
      const gl = canvas.getContext("webgl2", opts) || canvas.getContext("webgl", opts);
      if (!gl || (!(gl instanceof WebGL2RenderingContext) && !gl.getExtension("OES_element_index_uint"))) {
        throw new Error("WebGL is not available in this browser");
      }
      this.gl = gl;
      this.program = this.link(VERTEX_SHADER, FRAGMENT_SHADER);
      this.radius = Math.max(...meshes.map((m) => centreRadius(m.pos).radius)) || 1;
      for (const m of meshes) {
        m.centre = centreRadius(m.pos).centre;
        m.buffers = {pos: this.buffer(m.pos), normal: this.buffer(vertexNormals(m.pos))};
        for (const [mode, rgb] of Object.entries(m.colours)) m.buffers[mode] = this.buffer(rgb);
      }
      this.index = gl.createBuffer();
      gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, this.index);
      gl.bufferData(gl.ELEMENT_ARRAY_BUFFER, FACES, gl.STATIC_DRAW);
      this.listen();
    }

    link(vs, fs) {
      const gl = this.gl, program = gl.createProgram();
      for (const [type, source] of [[gl.VERTEX_SHADER, vs], [gl.FRAGMENT_SHADER, fs]]) {
        const shader = gl.createShader(type);
        gl.shaderSource(shader, source);
        gl.compileShader(shader);
        if (!gl.getShaderParameter(shader, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(shader));
        gl.attachShader(program, shader);
      }
      gl.linkProgram(program);
      if (!gl.getProgramParameter(program, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(program));
      return program;
    }

    buffer(data) {
      const gl = this.gl, b = gl.createBuffer();
      gl.bindBuffer(gl.ARRAY_BUFFER, b);
      gl.bufferData(gl.ARRAY_BUFFER, data, gl.STATIC_DRAW);
      return b;
    }

    attribute(name, buffer) {
      const gl = this.gl, loc = gl.getAttribLocation(this.program, name);
      gl.bindBuffer(gl.ARRAY_BUFFER, buffer);
      gl.enableVertexAttribArray(loc);
      gl.vertexAttribPointer(loc, 3, gl.FLOAT, false, 0, 0);
    }

    rotation() {
      const cy = Math.cos(this.yaw), sy = Math.sin(this.yaw), cp = Math.cos(this.pitch), sp = Math.sin(this.pitch);
      const turn = matmul([[1, 0, 0], [0, cp, -sp], [0, sp, cp]], [[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]]);
      return matmul(turn, this.basis);
    }

    draw() {
      const gl = this.gl, program = this.program;
      const w = this.canvas.width / this.meshes.length, h = this.canvas.height;
      gl.viewport(0, 0, this.canvas.width, h);
      gl.clearColor(...BACKGROUND, 1);
      gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
      gl.enable(gl.DEPTH_TEST);
      gl.useProgram(program);
      const r = this.rotation();
      const columns = [0, 1, 2].flatMap((j) => r.map((row) => row[j]));  // GLSL matrices are column-major
      gl.uniformMatrix3fv(gl.getUniformLocation(program, "uRot"), false, columns);
      const s = 0.92 / this.radius, side = Math.min(w, h);
      gl.uniform3f(gl.getUniformLocation(program, "uScale"), s * side / w, s * side / h, s);
      gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, this.index);
      this.meshes.forEach((m, i) => {
        gl.viewport(Math.round(i * w), 0, Math.round(w), h);
        gl.uniform3f(gl.getUniformLocation(program, "uCentre"), ...m.centre);
        this.attribute("aPos", m.buffers.pos);
        this.attribute("aNormal", m.buffers.normal);
        this.attribute("aColour", m.buffers[state.mode] || m.buffers.part);
        gl.drawElements(gl.TRIANGLES, FACES.length, gl.UNSIGNED_INT, 0);
      });
    }

    listen() {
      let last = null;
      const c = this.canvas;
      c.addEventListener("pointerdown", (e) => { last = [e.clientX, e.clientY]; c.setPointerCapture(e.pointerId); });
      c.addEventListener("pointerup", () => { last = null; });
      c.addEventListener("pointermove", (e) => {
        if (!last) return;
        this.yaw += 0.01 * (e.clientX - last[0]);
        this.pitch = Math.max(-1.5, Math.min(1.5, this.pitch + 0.01 * (e.clientY - last[1])));
        last = [e.clientX, e.clientY];
        this.draw();
      });
      c.addEventListener("dblclick", () => { this.yaw = 0; this.pitch = 0; this.draw(); });
    }
  }

  function glCanvas(id, panels, width = VIEW) {
    const dpr = window.devicePixelRatio || 1;
    const c = el("canvas", {id: id, class: "gl", title: "drag to rotate, double-click to reset",
                            style: `width:${width * panels}px;height:${width * 1.2}px`});
    c.width = Math.round(width * panels * dpr);
    c.height = Math.round(width * 1.2 * dpr);
    return c;
  }

  function addView(canvas, meshes, frame) {
    try {
      const view = new MeshView(canvas, meshes, frame);
      state.views.push(view);
      view.draw();
    } catch (err) {
      canvas.replaceWith(el("p", {class: "notes"}, `3D view unavailable: ${err.message}`));
    }
  }

  // --- the 2D panels: a crop, keypoints, wireframe ------------------------------------------------------
  function uniqueEdges() {
    const seen = new Set(), edges = [];
    for (let f = 0; f < FACES.length; f += 3) {
      for (const [a, b] of [[0, 1], [1, 2], [2, 0]]) {
        const i = Math.min(FACES[f + a], FACES[f + b]), j = Math.max(FACES[f + a], FACES[f + b]);
        const key = i * 4294967296 + j;
        if (!seen.has(key)) { seen.add(key); edges.push(i, j); }
      }
    }
    return edges;
  }
  const EDGES = uniqueEdges();

  function loadImage(uri) {
    return new Promise((resolve) => {
      if (!uri) { resolve(null); return; }
      const img = new Image();
      img.onload = () => resolve(img);
      img.onerror = () => resolve(null);
      img.src = uri;
    });
  }

  // A crop is its box resampled to S x S: drawn back at the box's aspect (w / h), CROP_VIEW pixels on its long
  // side; draw(g, sx, sy) gets the CSS pixels per crop pixel along x and y.
  function cropCanvas(image, aspect, faded, draw, message) {
    const dpr = window.devicePixelRatio || 1;
    const w = Math.round(CROP_VIEW * Math.min(1, aspect)), h = Math.round(CROP_VIEW * Math.min(1, 1 / aspect));
    const c = el("canvas", {style: `width:${w}px;height:${h}px`});
    c.width = Math.round(w * dpr);
    c.height = Math.round(h * dpr);
    const paint = () => {
      const g = c.getContext("2d");
      g.setTransform(dpr, 0, 0, dpr, 0, 0);
      g.fillStyle = "#fff";
      g.fillRect(0, 0, w, h);
      if (image) {
        g.imageSmoothingEnabled = false;
        g.globalAlpha = faded ? 0.45 : 1;
        g.drawImage(image, 0, 0, w, h);
        g.globalAlpha = 1;
      }
      if (draw) draw(g, w / DATA.crop, h / DATA.crop); else if (message) {
        g.fillStyle = "#a40";
        g.font = "12px sans-serif";
        g.fillText(message, 8, h / 2, w - 16);
      }
    };
    state.crops.push(paint);
    paint();
    return c;
  }

  function points(g, xy, sx, sy, radius, colour) {  // xy: crop pixels; radius: CSS pixels
    g.fillStyle = colour;
    for (let i = 0; i < xy.length; i += 2) {
      g.beginPath();
      g.arc(xy[i] * sx, xy[i + 1] * sy, radius, 0, 2 * Math.PI);
      g.fill();
    }
  }

  function wire(g, xy, sx, sy, colour) {  // the mesh's edges at its vertices' crop pixels xy
    g.strokeStyle = colour;
    g.lineWidth = 0.6;
    g.beginPath();
    for (let e = 0; e < EDGES.length; e += 2) {
      const a = 2 * EDGES[e], b = 2 * EDGES[e + 1];
      g.moveTo(xy[a] * sx, xy[a + 1] * sy);
      g.lineTo(xy[b] * sx, xy[b + 1] * sy);
    }
    g.stroke();
  }

  function panel(title, node) {
    return el("div", {class: "panel"}, node, title);
  }

  // --- the page -----------------------------------------------------------------------------------------
  function legend() {
    const stops = VIRIDIS.map((c, i) => `rgb(${c.join(",")}) ${(100 * i / (VIRIDIS.length - 1)).toFixed(1)}%`);
    const top = DATA.error_max_mm;
    const error = el("span", {class: "legend", id: "legend-error"}, el("span", {}, "vertex error: 0 mm"),
                     el("span", {class: "ramp", style: `background:linear-gradient(to right,${stops.join(",")})`}),
                     el("span", {}, `${top} mm and more (${top / 2} mm mid-scale)`));
    const swatches = (DATA.parts ? DATA.parts.colours : []).map((hex, j) =>
      el("span", {}, el("span", {class: "swatch", style: `background:${hex}`}), `${j}`));
    const part = el("span", {class: "legend", id: "legend-part"}, el("span", {}, "learnt part:"), ...swatches);
    return [error, part];
  }

  function setMode(mode) {
    state.mode = mode;
    document.getElementById("legend-error").style.display = mode === "error" ? "" : "none";
    document.getElementById("legend-part").style.display = mode === "part" ? "" : "none";
    for (const v of state.views) v.draw();
  }

  function controls() {
    const radio = (value, label, enabled) => {
      const input = el("input", {type: "radio", name: "colour", id: `mode-${value}`, value: value});
      input.checked = state.mode === value;
      input.disabled = !enabled;
      input.addEventListener("change", () => setMode(value));
      return el("label", {}, input, label);
    };
    const truth = el("input", {type: "checkbox", id: "truth-overlay"});
    truth.disabled = !DATA.ground_truth;
    truth.addEventListener("change", () => { state.truthOverlay = truth.checked; state.crops.forEach((p) => p()); });
    return el("div", {class: "bar"}, "colour the 3D views by:", radio("error", "vertex error", DATA.ground_truth),
              radio("part", "learnt part", !!DATA.parts), el("label", {}, truth, "true projection over the crops"),
              ...legend());
  }

  function header() {
    const rows = DATA.summary.map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", {}, v)));
    const notes = DATA.notes.map((n) => el("li", {}, n));
    const breakdown = (DATA.breakdown || []).map((t) => el("table", {class: "breakdown"}, el("caption", {}, t.title),
      el("tr", {}, ...t.columns.map((c) => el("th", {}, c))),
      ...t.rows.map((r) => el("tr", {}, ...r.map((v) => el("td", {}, v))))));
    return el("div", {class: "head"}, el("table", {class: "summary"}, ...rows), ...breakdown,
              el("ul", {class: "notes"}, ...notes),
              el("p", {}, "Drag a 3D view to rotate it (double-click resets). Shapes are depth-centred; " +
                 (DATA.ground_truth ? "prediction and truth share one scale." : "image-frame pixels.")),
              controls());
  }

  function templateCard() {
    const canvas = glCanvas("gl-template", 1, 180);
    const card = el("div", {class: "card"}, el("h2", {}, "template: learnt parts (arg-max)"),
                    el("div", {class: "panels"}, panel("rest pose", canvas)));
    const pos = decode(DATA.template.vertices);
    return [card, () => addView(canvas, [{pos: pos, colours: {part: partColours(pos.length / 3)}}], DATA.template)];
  }

  async function instanceCard(inst, i) {
    const [iuv, rgb] = await Promise.all([loadImage(inst.iuv), loadImage(inst.rgb)]);
    const keypoints = decode(inst.keypoints), overlay = decode(inst.overlay), trueOverlay = decode(inst.true_overlay);
    const noBox = "no box: cannot place the mesh in the crop";
    const ratio = inst.box ? (inst.box[2] - inst.box[0]) / (inst.box[3] - inst.box[1]) : 1;
    const aspect = Math.min(Math.max(ratio || 1, 0.2), 5);  // the box's w / h
    const input = cropCanvas(iuv, aspect, false,
                             keypoints && ((g, sx, sy) => points(g, keypoints, sx, sy, 1.2, "rgba(0,0,0,0.7)")), noBox);
    const over = cropCanvas(rgb || iuv, aspect, !rgb, overlay && ((g, sx, sy) => {
      wire(g, overlay, sx, sy, "rgba(20,20,20,0.4)");
      if (state.truthOverlay && trueOverlay) points(g, trueOverlay, sx, sy, 1.3, "rgba(230,0,160,0.8)");
    }), noBox);
    const panels = [panel(iuv ? "IUV crop (parts), visible keypoints" : "visible keypoints (no IUV crop)", input)];
    if (rgb) panels.push(panel("RGB crop", cropCanvas(rgb, aspect, false, null, null)));
    panels.push(panel(`predicted mesh over the ${rgb ? "RGB" : "IUV"} crop`, over));
    const pred = decode(inst.pred), truth = decode(inst.true), n = pred.length / 3;
    const err = truth ? errorsMm(pred, truth) : null;
    const colours = {part: partColours(n)};
    if (err) colours.error = vertexColours(n, (v) => viridis(err[v] / DATA.error_max_mm));
    const meshes = [{pos: pred, colours: colours}];
    if (truth) meshes.push({pos: truth, colours: colours});
    const canvas = glCanvas(`gl-${i}`, meshes.length);
    panels.push(panel(truth ? "prediction | truth" : "prediction", canvas));
    return [el("div", {class: "card"}, el("h2", {}, `test instance ${i} (store row ${inst.row}): ${inst.note}`),
               el("div", {class: "panels"}, ...panels)), () => addView(canvas, meshes, DATA.frame)];
  }

  async function main() {
    const root = document.getElementById("report");
    const [card, show] = templateCard();
    root.append(el("div", {class: "top"}, header(), card));
    show();
    for (let i = 0; i < DATA.instances.length; i++) {
      const [node, showInstance] = await instanceCard(DATA.instances[i], i);
      root.append(node);
      showInstance();  // after the canvas is in the page
    }
    setMode(state.mode);
    document.body.dataset.ready = "1";
  }

  main();
})();
