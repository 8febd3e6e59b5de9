#!/bin/bash
# cap.sh <name> <count> <timeout> '<server cmd>' '<client cmd>'
# server on g1 (10.77.0.11), client on g2; pcap on rxe-tap1 -> /work/captures-new/<name>.pcap
set -uo pipefail
H=/work/shared/interop; O=${O:-$PWD}
name=$1 count=$2 t=$3 srv=$4 cli=$5 out=$O/$1.txt
"$H/capture" start "$O/$name.pcap" rxe-tap1 "$count"
{ echo "### $name"; echo "# server (g1): $srv"; echo "# client (g2): $cli"; } > "$out"
"$H/guest-run" -t "$t" 1 "$srv" > "$out.srv" 2>&1 &
sp=$!
sleep "${PAIR_DELAY:-4}"
t0=$(date +%s.%N)
"$H/guest-run" -t "$t" 2 "$cli" > "$out.cli" 2>&1; rc=$?
wait "$sp"; src=$?
{ echo "# client rc=$rc server rc=$src wall=$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN{printf "%.2f", a-b}')s"
  echo "## client output"; cat "$out.cli"; echo "## server output"; cat "$out.srv"; } >> "$out"
rm -f "$out.cli" "$out.srv"
"$H/capture" stop "$O/$name.pcap" | tee -a "$out"
echo "== $name: client rc=$rc server rc=$src"
echo "## icrc_check" >> "$out"
"$H/icrc_check.py" "$O/$name.pcap" | tee -a "$out"
echo "## opcodes"; tshark -r "$O/$name.pcap" -T fields -e infiniband.bth.opcode 2>/dev/null | sort -n | uniq -c | awk '{printf "%s:%s ", $2, $1} END{print ""}' | tee -a "$out"
ls -la "$O/$name.pcap"
