"""The style sheet and the script the HTML report inlines (``analysis.report``).

The script is plain JavaScript with no library: ``esenShow`` shows one hull figure of the
system selector, ``esenFilter`` and ``esenSort`` filter and sort the results table,
``esenCsv`` makes the CSV download of a large table. Without
JavaScript the page still shows the summary and every table.
"""

CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222;
       padding: 0 1em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; }
#results th { cursor: pointer; position: sticky; top: 0; }
.cards { display: flex; flex-wrap: wrap; gap: 0.6em; margin: 0.5em 0 1em; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 0.5em 1em; min-width: 7em; }
.card b { display: block; font-size: 1.6em; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 1em; }
.filters { display: flex; flex-wrap: wrap; gap: 0.8em; align-items: center; margin: 0.5em 0; }
details > summary { cursor: pointer; font-size: 1.2em; font-weight: bold; margin: 1em 0; }
.note { color: #a00; }
.confusion td.count { font-size: 1.4em; padding: 0.5em 1.2em; }
caption { font-weight: bold; text-align: left; }
"""

#: Filters of the results table: column -> label (the choices are the column's own values).
FILTERS = {"status": "status", "stable": "stable", "candidate": "candidate",
            "converged": "converged", "chemsys": "system"}  # fmt: skip

SCRIPT = r"""
function esenShow(value) {
  document.querySelectorAll('[data-system]').forEach(function (div) {
    div.hidden = div.dataset.system !== value;
    if (!div.hidden && window.Plotly) {
      div.querySelectorAll('.plotly-graph-div').forEach(function (g) { Plotly.Plots.resize(g); });
    }
  });
}
function esenCsv(link) {
  var text = document.createElement('textarea');
  text.innerHTML = document.getElementById('results-csv').textContent;
  var blob = new Blob([text.value], {type: 'text/csv'});
  link.href = URL.createObjectURL(blob);
  link.removeAttribute('onclick');
  return true;
}
function esenFilter() {
  var table = document.getElementById('results');
  if (!table) { return; }
  var cols = Array.from(table.tHead.rows[0].cells).map(function (c) { return c.dataset.col; });
  var rules = [];
  document.querySelectorAll('[data-filter]').forEach(function (el) {
    if (el.value !== '') { rules.push([el.dataset.filter, el.value.toLowerCase()]); }
  });
  var shown = 0;
  Array.from(table.tBodies[0].rows).forEach(function (row) {
    var ok = rules.every(function (rule) {
      if (rule[0] === '*') { return row.textContent.toLowerCase().indexOf(rule[1]) >= 0; }
      var i = cols.indexOf(rule[0]);
      return i < 0 || row.cells[i].textContent.trim().toLowerCase() === rule[1];
    });
    row.hidden = !ok;
    shown += ok ? 1 : 0;
  });
  document.getElementById('shown').textContent = shown;
}
function esenSort(th) {
  var table = th.closest('table'), body = table.tBodies[0];
  var i = Array.from(th.parentNode.cells).indexOf(th), up = th.dataset.dir !== 'up';
  th.parentNode.querySelectorAll('th').forEach(function (h) { delete h.dataset.dir; });
  th.dataset.dir = up ? 'up' : 'down';
  var rows = Array.from(body.rows), key = function (r) {
    var t = r.cells[i].textContent.trim(), x = Number(t);
    return t === '' ? null : (isNaN(x) ? t : x);
  };
  rows.sort(function (a, b) {
    var x = key(a), y = key(b);
    if (x === null || y === null) { return x === y ? 0 : (x === null ? 1 : -1); }  // empty last
    var c = typeof x !== typeof y ? (typeof x === 'number' ? -1 : 1)  // numbers before text
      : (typeof x === 'number' ? x - y : String(x).localeCompare(String(y)));
    return up ? c : -c;
  });
  rows.forEach(function (r) { body.appendChild(r); });
}
document.addEventListener('DOMContentLoaded', function () {
  var select = document.getElementById('hull-system');
  if (select) { esenShow(select.value); }
});
"""
