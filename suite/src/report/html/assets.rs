//! The report's only assets: inline CSS and JS, and the page shell with its
//! Content-Security-Policy.

use super::esc;

pub(super) const CSS: &str = r#"
:root{--fg:#1b1f23;--muted:#5f6b76;--line:#d8dee4;--bg:#fff;--code:#f3f5f7}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg);margin:0 auto;padding:1em 2em 4em;max-width:1500px}
h1{font-size:1.6em;margin:.2em 0 .3em}h2{font-size:1.25em;margin:1.6em 0 .5em;border-bottom:1px solid var(--line);padding-bottom:.2em}h3{font-size:1.05em;margin:.2em 0}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
pre{background:var(--code);padding:.6em .8em;overflow-x:auto;white-space:pre-wrap;word-break:break-word;margin:.4em 0}
a{color:#0b57d0;text-decoration:none}a:hover{text-decoration:underline}
.muted,small{color:var(--muted)}
table{border-collapse:collapse}
th,td{border:1px solid var(--line);padding:3px 6px;vertical-align:top;text-align:left}
th{background:#f6f8fa;font-weight:600}
.badge{display:inline-block;padding:0 .45em;border-radius:3px;font-size:11.5px;font-weight:700;letter-spacing:.02em;white-space:nowrap;line-height:1.6}
.o-pass{background:#c8e6c9;color:#1b5e20}
.o-non-strict{background:#ffe082;color:#6d4c00}
.o-info{background:#bbdefb;color:#0d47a1}
.o-unsupported{background:#e7e9ec;color:#57606a}
.o-xfail{background:#d1c4e9;color:#4527a0}
.o-xpass{background:#ffb74d;color:#5d3200}
.o-fail{background:#e53935;color:#fff}
.o-timeout{background:#ad1457;color:#fff}
.o-error{background:#37474f;color:#fff}
.o-none{background:repeating-linear-gradient(45deg,#fafbfc,#fafbfc 4px,#eef0f3 4px,#eef0f3 8px);color:#8c959f}
.legend{display:flex;flex-wrap:wrap;gap:.4em 1.2em;margin:.5em 0 1em;padding:.6em .8em;border:1px solid var(--line);border-radius:6px}
.legend div{display:flex;gap:.4em;align-items:center}.legend .swatch{display:inline-block;width:2.2em;height:1.3em;border:1px solid var(--line)}
.totals .badge{margin-right:.3em}
table.arcs td.arc{width:58px;min-width:58px;height:40px;text-align:center;vertical-align:middle;padding:0}
table.arcs td.arc a,table.arcs td.arc span.cell{display:block;color:inherit;padding:3px 2px;height:100%}
table.arcs td.arc .ab{display:block;font-weight:700;font-size:13px}
table.arcs td.arc .hint{display:block;font-size:10.5px;opacity:.85}
table.arcs td.refuse{outline:2px dashed rgba(0,0,0,.35);outline-offset:-4px}
table.arcs td.noop{outline:1px dotted rgba(0,0,0,.35);outline-offset:-3px}
table.arcs th,table.cov th{font-size:11px;text-align:center;vertical-align:middle;white-space:nowrap}
table.arcs tr:first-child th,table.cov tr:first-child th{white-space:normal;min-width:58px}
table.arcs th.corner{font-weight:400;color:var(--muted)}
.arcgrid{display:flex;flex-wrap:wrap;gap:1.5em 2.5em}
.arcgrid figure{margin:0;width:min-content}.arcgrid figure p{min-width:30em}.arcgrid figcaption{margin:.2em 0 .4em;font-weight:600}
table.mx th.run{font-size:11px;font-weight:400;min-width:88px;vertical-align:bottom;position:sticky;top:0;z-index:1}
table.mx th.run b{font-size:12px}
table.mx td,table.mx th{padding:1px 6px;font-size:12px}
table.mx td.mx{text-align:center;padding:0;min-width:88px}
table.mx td.mx a{display:block;color:inherit;padding:1px 4px;font-weight:700}
tbody.unobservable th.group,tbody.unobservable-c th.group{background:#fff;font-weight:400;color:var(--muted);padding-top:.8em}
table.mx.only-differs tr.same{display:none}
table.mx tr.differs th.clause-id{background:#fff3cd}
table.clauses td.verdict{min-width:130px}
table.clauses tr.clause{cursor:pointer}
table.clauses tr.clause:hover td{filter:brightness(.97)}
table.clauses td.verdict details>summary{list-style:none;cursor:pointer}
table.clauses td.verdict summary small{color:inherit;opacity:.8}
table.clauses td.verdict details>summary::-webkit-details-marker{display:none}
table.clauses td.verdict .finding,.failure .finding{background:#fff;color:var(--fg);border:1px solid var(--line);border-left:4px solid #e53935;border-radius:3px;padding:.35em .6em;margin:.4em 0}
.finding table.ea th{width:6.5em;background:none;border:0;padding:1px 6px 1px 0;color:var(--muted)}
.finding table.ea td{border:0;padding:1px 0}
.finding code{word-break:break-word;white-space:pre-wrap}
table.clauses>tbody>tr>th{white-space:nowrap}
.finding .exp{color:#1b5e20}.finding .act{color:#b71c1c}
a.chip{display:inline-block;padding:0 .35em;margin:1px 0;border-radius:3px;font:11.5px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;color:inherit}
td.verdict .observers{font-size:12px;color:var(--fg);background:#fff;padding:.2em .4em;margin-top:.3em}
tr:target>td,tr:target>th,section:target{box-shadow:inset 0 0 0 2px #0b57d0}
section.check{border:1px solid var(--line);border-left-width:6px;border-radius:4px;padding:.5em .8em;margin:.6em 0}
section.check.o-pass,section.check.o-fail,section.check.o-non-strict,section.check.o-info,section.check.o-unsupported,section.check.o-xfail,section.check.o-xpass,section.check.o-timeout,section.check.o-error{background:#fff;color:var(--fg)}
section.check.o-pass{border-left-color:#43a047}section.check.o-fail{border-left-color:#e53935}section.check.o-non-strict{border-left-color:#ffb300}
section.check.o-info{border-left-color:#64b5f6}section.check.o-unsupported{border-left-color:#bdbdbd}section.check.o-xfail{border-left-color:#7e57c2}
section.check.o-xpass{border-left-color:#fb8c00}section.check.o-timeout{border-left-color:#ad1457}section.check.o-error{border-left-color:#37474f}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:1px 1em;margin:.3em 0}dl.meta dt{color:var(--muted)}dl.meta dd{margin:0}
table.trace td,table.trace th{font-size:12.5px}table.trace tr.hit td{background:#ffebee}
.hide-pass section.check.o-pass{display:none}
.bar{display:inline-block;width:220px;height:12px;background:#eceff1;border-radius:6px;overflow:hidden;vertical-align:middle}.bar span{display:block;height:100%;background:#43a047}
table.cov td.arc{width:52px;height:30px;text-align:center;vertical-align:middle;font-size:11px}
td.hit{background:#a5d6a7;color:#1b5e20;font-weight:700}
nav.top{font-size:13px;margin-bottom:.5em}
table.runinfo th{white-space:nowrap}
.toolbar{margin:.4em 0;font-size:13px}
.toolbar label{margin-right:.8em}
p.warning{border:1px solid #ffb300;background:#fff8e1;border-radius:4px;padding:.4em .7em}
div.wide{max-width:100%;overflow-x:auto}
th.run code.spec,td.spec code{word-break:break-all;white-space:normal}
th.run{max-width:14em}
table.clauses td.verdict details[open]{min-width:0;max-width:32em}
tr.filtered{display:none}
tr.unfinished td{background:#fff8e1}
.badge.unfinished{white-space:normal}
table.diff tr.same{display:none}table.diff.show-all tr.same{display:table-row}table.diff tr.nomatch{display:none}
table.diff tr.differs th{background:#fff3cd}ul.diff-runs{overflow-wrap:anywhere}
table.diff td{text-align:center;font-size:12px;font-weight:700}table.diff td a{color:inherit}
"#;

pub(super) const JS: &str = r#"
(function(){
  function openTarget(){
    var id=decodeURIComponent(location.hash.slice(1)); if(!id) return;
    var el=document.getElementById(id); if(!el) return;
    el.querySelectorAll('details').forEach(function(d){d.open=true;});
  }
  window.addEventListener('hashchange',openTarget); openTarget();
  document.querySelectorAll('tr.clause').forEach(function(tr){
    tr.addEventListener('click',function(e){
      if(e.target.closest('a,summary')) return;
      var ds=tr.querySelectorAll('details'); var open=false;
      ds.forEach(function(d){ if(!d.open) open=true; });
      ds.forEach(function(d){ d.open=open; });
    });
  });
  var only=document.getElementById('only-differs');
  if(only){ only.addEventListener('change',function(){
    document.querySelectorAll('table.mx').forEach(function(t){ t.classList.toggle('only-differs',only.checked); });
  }); }
  var fl=document.getElementById('filter-level'),fo=document.getElementById('filter-outcome'),ff=document.getElementById('filter-family');
  function filterClauses(){
    var n=0;
    document.querySelectorAll('tr[data-clause]').forEach(function(tr){
      var ok=(!fl.value||tr.dataset.level===fl.value)&&(!ff.value||tr.dataset.family===ff.value)&&(!fo.value||tr.dataset.outcomes.indexOf(' '+fo.value+' ')>=0);
      tr.classList.toggle('filtered',!ok); if(ok&&tr.classList.contains('clause')) n++;
    });
    var c=document.getElementById('filter-count'); if(c) c.textContent=(fl.value||fo.value||ff.value)?n+' clauses match':'';
  }
  if(fl&&fo&&ff){ [fl,fo,ff].forEach(function(s){ s.addEventListener('change',filterClauses); }); filterClauses(); }
  var da=document.getElementById('diff-a'),db=document.getElementById('diff-b'),dall=document.getElementById('diff-all'),dfl=document.getElementById('diff-filter');
  function diff(){
    var a=+da.value,b=+db.value,n=0,d=0;
    document.querySelectorAll('#diff tbody tr').forEach(function(tr){
      var td=tr.querySelectorAll('td'),ra=td[a].dataset.raw,rb=td[b].dataset.raw;
      var keep=!dfl.value||tr.dataset.check.indexOf(dfl.value)===0;
      var differs=(a!==b)&&(ra!==rb); tr.className=(differs?'differs':'same');
      if(!keep){ tr.classList.add('nomatch'); return; }
      if(ra&&rb) n++; if(differs) d++;
    });
    document.getElementById('diff').classList.toggle('show-all',dall.checked);
    document.getElementById('diff-summary').textContent=n+' checks compared, '+d+' differ (R'+(a+1)+' vs R'+(b+1)+')';
  }
  if(da&&db){ [da,db,dall].forEach(function(s){ s.addEventListener('change',diff); }); dfl.addEventListener('input',diff); diff(); }
  var hide=document.getElementById('hide-pass');
  if(hide){ hide.addEventListener('change',function(){
    document.getElementById('checks').classList.toggle('hide-pass',hide.checked);
  }); }
})();
"#;

pub(super) fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{CSS}{}</style>\n</head>\n<body>\n{body}\n<script>{JS}</script>\n</body>\n</html>\n",
        esc(title),
        super::coverage::CSS
    )
}
