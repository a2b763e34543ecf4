# SPDX-License-Identifier: MIT
"""psyne_bench --hgrm: the file parses as HdrHistogram's percentile
distribution (what its plotter reads) and agrees with the RESULT line; p99.99
is printed only for runs of at least 10^5 round trips.

Usage: bench_hgrm_test.py PSYNE_BENCH SCRATCH_DIR
"""
import os
import re
import subprocess
import sys

bench, scratch = sys.argv[1], sys.argv[2]
os.makedirs(scratch, exist_ok=True)
path = os.path.join(scratch, "rtt.hgrm")


def run(trips):
    out = subprocess.run([bench, "--workload", "inproc-pingpong", "--iterations", str(trips), "--runs", "1",
                          "--hgrm", path, "--no-table"], stdout=subprocess.PIPE, text=True, check=True,
                         timeout=300).stdout
    results = [dict(kv.split("=", 1) for kv in line.split()[1:]) for line in out.splitlines()
               if line.startswith("RESULT ")]
    assert len(results) == 1, out
    return results[0]


def fail(why):
    print("bench_hgrm_test: FAIL: " + why)
    sys.exit(1)


trips = 20000
result = run(trips)
if "rtt_p9999_ns" in result:
    fail("p99.99 printed for runs of %d round trips" % trips)
text = open(path).read()
lines = text.splitlines()
if not lines[0].startswith("# inproc-pingpong 64 B"):
    fail("no naming comment line: %r" % lines[0])
if lines[1].split() != ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"] or lines[2] != "":
    fail("header: %r %r" % (lines[1], lines[2]))
row = re.compile(r"^\s+([0-9.]+)\s+([0-9.]+)\s+([0-9]+)(\s+([0-9.]+))?$")
rows = []
footer = {}
for line in lines[3:]:
    m = row.match(line)
    if m:
        rows.append((float(m.group(1)), float(m.group(2)), int(m.group(3)), m.group(5)))
        continue
    for key, value in re.findall(r"(\w+)\s*=\s*([0-9.]+)", line):
        footer[key] = float(value)
    if not line.startswith("#["):
        fail("a line that is neither a row nor a footer: %r" % line)
if len(rows) < 20:
    fail("only %d percentile rows" % len(rows))
for (v0, p0, c0, _), (v1, p1, c1, _) in zip(rows, rows[1:]):
    if not (p1 > p0 and v1 >= v0 and c1 >= c0):
        fail("rows not increasing: %r then %r" % ((v0, p0, c0), (v1, p1, c1)))
for v, p, c, inv in rows[:-1]:
    if inv is None or abs(float(inv) - 1 / (1 - p)) > 0.01 * (1 / (1 - p)) + 0.01:
        fail("1/(1-Percentile) column wrong on %r" % ((v, p, c, inv),))
last = rows[-1]
if last[1] != 1.0 or last[3] is not None:
    fail("the last row is not the 100 %% row of three columns: %r" % (last,))
if last[2] != trips or footer.get("count") != trips:
    fail("total count %r / footer %r, expected %d round trips" % (last[2], footer.get("count"), trips))
if abs(last[0] - int(result["rtt_max_ns"]) / 1e3) > 0.0015 or abs(footer["Max"] - last[0]) > 0.0015:
    fail("max %r, RESULT says %s ns, footer %r" % (last[0], result["rtt_max_ns"], footer.get("Max")))
p50 = [v for v, p, c, inv in rows if p == 0.5]
if len(p50) != 1 or abs(p50[0] - int(result["rtt_p50_ns"]) / 1e3) > 0.0015:
    fail("the 50 %% row %r differs from RESULT rtt_p50_ns=%s" % (p50, result["rtt_p50_ns"]))
if not footer.get("Mean") or not (rows[0][0] <= footer["Mean"] <= last[0]):
    fail("mean %r outside [min, max]" % footer.get("Mean"))

result = run(100000)
if "rtt_p9999_ns" not in result:
    fail("no p99.99 for runs of 10^5 round trips")
print("bench_hgrm_test: %d rows parse as .hgrm, count, max and p50 match RESULT; p99.99 only from 10^5 trips"
      % len(rows))
