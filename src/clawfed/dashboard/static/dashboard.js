/* clawfed dashboard: live charts over server-sent events, approval buttons, model service form. */
"use strict";
const clawfed = (() => {
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

  async function post(url, body) {
    const r = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
      body: JSON.stringify(body),
      credentials: "same-origin",
    });
    const data = await r.json();
    if (!r.ok) throw new Error(data.detail || data.title || r.statusText);
    return data;
  }

  function events(onEvent) {
    const source = new EventSource("/dashboard/events");
    source.onmessage = (e) => onEvent(JSON.parse(e.data));
    for (const kind of ["round_started", "round_completed", "job_completed", "job_failed",
      "node_joined", "node_lost", "approval_changed", "approval_wait", "approval_excluded", "approval_admitted",
      "node_dropped"]) {
      source.addEventListener(kind, (e) => onEvent(JSON.parse(e.data)));
    }
    window.clawfedEvents = source;
    return source;
  }

  function liveOverview() {
    events((ev) => {
      if (ev.kind === "node_joined" || ev.kind === "node_lost") {
        const row = document.querySelector(`#nodes tr[data-node="${CSS.escape(ev.node_id)}"]`);
        if (!row) return;
        const cell = row.querySelector(".liveness");
        const up = ev.kind === "node_joined";
        cell.textContent = up ? "live" : "offline";
        cell.className = "liveness " + (up ? "up" : "down");
      }
    });
  }

  function liveJob(jobId) {
    const data = JSON.parse(document.getElementById("chart-data").textContent);
    const select = document.getElementById("metric");
    const draw = () => {
      const metric = select.value;
      const traces = Object.entries(data.series).map(([dept, byMetric]) => {
        const pts = byMetric[metric] || [];
        return { name: dept, mode: "lines+markers", x: pts.map((p) => p[0]), y: pts.map((p) => p[1]) };
      });
      Plotly.react("chart", traces, {
        margin: { t: 20 }, xaxis: { title: "round", dtick: 1 }, yaxis: { title: metric },
      }, { displayModeBar: false, responsive: true });
    };
    const fillMetrics = () => {
      const current = select.value;
      select.innerHTML = "";
      const names = data.metrics.length ? data.metrics : ["samples"];
      for (const m of names) select.add(new Option(m, m));
      const preferred = names.find((m) => m !== "samples") || names[0];
      select.value = names.includes(current) ? current : preferred;
    };
    select.addEventListener("change", draw);
    fillMetrics();
    draw();
    events((ev) => {
      if (ev.job_id !== jobId) return;
      if (ev.kind === "round_completed") {
        for (const [dept, metrics] of Object.entries(ev.departments || {})) {
          const byMetric = (data.series[dept] = data.series[dept] || {});
          for (const [name, value] of Object.entries(metrics)) {
            (byMetric[name] = byMetric[name] || []).push([ev.round, value]);
            if (!data.metrics.includes(name)) data.metrics.push(name);
          }
          (byMetric.samples = byMetric.samples || []).push([ev.round, ev.samples?.[dept] ?? 0]);
        }
        if (!data.metrics.includes("samples")) data.metrics.push("samples");
        data.metrics.sort();
        document.getElementById("rounds-done").textContent = ev.round;
        const row = document.createElement("tr");
        for (const text of [ev.round, "", "completed", Object.keys(ev.departments || {}).join(", "), ev.version]) {
          const td = document.createElement("td");
          td.textContent = text;
          row.appendChild(td);
        }
        document.querySelector("#rounds tbody").appendChild(row);
        fillMetrics();
        draw();
      } else if (ev.kind === "job_completed" || ev.kind === "job_failed") {
        document.getElementById("job-status").textContent = ev.kind === "job_completed" ? "completed" : "failed";
      } else if (ev.kind === "approval_wait") {
        document.getElementById("job-status").textContent = "waiting for approval";
      } else if (ev.kind === "approval_admitted" || ev.kind === "approval_excluded") {
        document.getElementById("job-status").textContent = "running";
      }
    });
  }

  function lineage() {
    const g = JSON.parse(document.getElementById("lineage-data").textContent);
    const pos = Object.fromEntries(g.nodes.map((n) => [n.id, [n.number, 0]]));
    const edges = { x: [], y: [], mode: "lines", line: { color: "#8aa" }, hoverinfo: "skip", showlegend: false };
    for (const [a, b] of g.edges) {
      if (!pos[a] || !pos[b]) continue;
      edges.x.push(pos[a][0], pos[b][0], null);
      edges.y.push(pos[a][1], pos[b][1], null);
    }
    const nodes = {
      x: g.nodes.map((n) => pos[n.id][0]), y: g.nodes.map((n) => pos[n.id][1]),
      text: g.nodes.map((n) => `${n.id} (round ${n.round})`), mode: "markers+text",
      textposition: "top center", marker: { size: 14, color: "#2a6f97" }, showlegend: false,
    };
    Plotly.react("lineage", [edges, nodes], {
      margin: { t: 30 }, height: 220, yaxis: { visible: false }, xaxis: { title: "version" },
    }, { displayModeBar: false, responsive: true });
  }

  function approvals() {
    const out = document.getElementById("approval-result");
    for (const row of document.querySelectorAll("#approvals tbody tr[data-job]")) {
      const { job, department, purpose } = row.dataset;
      const base = `/api/v1/approvals/${encodeURIComponent(job)}/${encodeURIComponent(department)}`;
      const act = async (what, body) => {
        try {
          const a = await post(`${base}/${what}`, body);
          row.querySelector(".status").textContent = a.status;
          for (const b of row.querySelectorAll("button")) b.remove();
          out.textContent = `${a.department}: ${a.status} for job ${a.job_id}`;
        } catch (err) {
          out.textContent = err.message;
        }
      };
      row.querySelector(".approve")?.addEventListener("click", () => act("approve", { purpose }));
      row.querySelector(".revoke")?.addEventListener("click", () => {
        const reason = window.prompt("Why is the approval withdrawn?", "withdrawn from the dashboard");
        if (reason) act("revoke", { reason });
      });
    }
  }

  function services() {
    for (const section of document.querySelectorAll("section.service")) {
      section.querySelector(".predict").addEventListener("click", async () => {
        const result = section.querySelector(".result");
        try {
          const rows = JSON.parse(section.querySelector(".rows").value);
          const r = await post(`/api/v1/services/${encodeURIComponent(section.dataset.job)}/predict`, { rows });
          result.textContent = JSON.stringify(r.predictions);
        } catch (err) {
          result.textContent = err.message;
        }
      });
    }
  }

  return { liveOverview, liveJob, lineage, approvals, services };
})();
