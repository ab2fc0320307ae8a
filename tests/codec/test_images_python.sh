#!/bin/sh
# `netdiff encode --images` writes PNGs that a decoder sharing no code with
# ours reads as exactly the flows' pixels: Python's zlib and a PNG reader
# written here (chunk CRCs, Adler-32 via zlib, all five filters) against the
# per-flow nPrint CSVs of --csv-dir for the same flows (address columns
# dropped, 1 red, 0 green, -1 blue, blue padding), with the default budget
# (mostly padding), a budget below the longest flow (some images without
# padding), and `file` naming each a PNG of the right size.
. tests/lib.sh
PY=$(command -v python3 || true)
if [ -z "$PY" ]; then skip "python3 not found"; nd_done; exit $?; fi
cap="$ND_TESTDATA/apps/netflix/ndpi_netflix__netflix.pcap"
cat > "$ND_TMP/check.py" <<'EOF'
import csv, os, struct, sys, zlib

def read_png(path):
    data = open(path, 'rb').read()
    assert data[:8] == b'\x89PNG\r\n\x1a\n', 'signature'
    off, idat, ihdr, end = 8, b'', None, False
    while off < len(data):
        n, = struct.unpack('>I', data[off:off + 4])
        typ, body = data[off + 4:off + 8], data[off + 8:off + 8 + n]
        crc, = struct.unpack('>I', data[off + 8 + n:off + 12 + n])
        assert zlib.crc32(typ + body) == crc, 'CRC of ' + typ.decode()
        if typ == b'IHDR':
            ihdr = struct.unpack('>IIBBBBB', body)
        elif typ == b'IDAT':
            idat += body
        elif typ == b'IEND':
            end = True
        off += 12 + n
    assert ihdr and end and off == len(data), 'chunks'
    w, h, depth, ctype, _, _, interlace = ihdr
    assert depth == 8 and ctype == 2 and interlace == 0, 'not 8-bit RGB'
    raw = zlib.decompress(idat)  # checks the Adler-32
    stride = 3 * w
    assert len(raw) == h * (stride + 1), 'inflated size'
    rows, prev = [], bytearray(stride)
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if f == 0 or (f == 2 and not any(line)):  # plain, or a copy of the row above
            line = line if f == 0 else bytearray(prev)
            rows.append(bytes(line))
            prev = line
            continue
        if f == 2:
            line = bytearray((x + p) & 255 for x, p in zip(line, prev))
            rows.append(bytes(line))
            prev = line
            continue
        for i in range(stride):
            a = line[i - 3] if i >= 3 else 0
            b = prev[i]
            c = prev[i - 3] if i >= 3 else 0
            if f == 0: p = 0
            elif f == 1: p = a
            elif f == 2: p = b
            elif f == 3: p = (a + b) // 2
            elif f == 4:
                q = a + b - c
                pa, pb, pc = abs(q - a), abs(q - b), abs(q - c)
                p = a if pa <= pb and pa <= pc else b if pb <= pc else c
            else: raise AssertionError('filter %d' % f)
            line[i] = (line[i] + p) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, rows

COL = {'1': b'\xff\x00\x00', '0': b'\x00\xff\x00', '-1': b'\x00\x00\xff'}
img_dir, csv_dir, budget = sys.argv[1], sys.argv[2], int(sys.argv[3])
names = sorted(f[:-4] for f in os.listdir(img_dir) if f.endswith('.png'))
assert names and names == sorted(f[:-4] for f in os.listdir(csv_dir) if f.endswith('.csv')), 'same flows'
full = 0
for name in names:
    w, h, rows = read_png(os.path.join(img_dir, name + '.png'))
    with open(os.path.join(csv_dir, name + '.csv')) as f:
        r = csv.reader(f)
        head = next(r)
        keep = [i for i, c in enumerate(head) if not c.startswith(('src_ip', 'ipv4_src', 'ipv4_dst', 'ipv6_src', 'ipv6_dst'))]
        want = [b''.join(COL[row[i]] for i in keep) for row in r][:budget]
    assert w == len(keep) == 1088 and h == budget, '%s: size %dx%d' % (name, w, h)
    full += len(want) == budget
    want += [COL['-1'] * w] * (h - len(want))
    bad = [y for y in range(h) if rows[y] != want[y]]
    assert not bad, '%s: rows %s differ' % (name, bad[:5])
print('%d images, %d without padding' % (len(names), full))
EOF
for budget in 1024 40; do
  rm -rf "$ND_TMP/img" "$ND_TMP/csv"
  if $NETDIFF encode "$cap" --images "$ND_TMP/img" --packets $budget 2>"$ND_TMP/err" &&
     $NETDIFF encode "$cap" --csv-dir "$ND_TMP/csv" --packets $budget 2>>"$ND_TMP/err"; then
    if out=$($PY "$ND_TMP/check.py" "$ND_TMP/img" "$ND_TMP/csv" $budget 2>&1); then
      ok "budget $budget: Python's zlib decodes the flows' pixels ($out)"
    else
      fail "budget $budget: $(echo "$out" | tail -1)"
    fi
    nfile=$(file "$ND_TMP"/img/*.png | grep -c "PNG image data, 1088 x $budget, 8-bit/color RGB, non-interlaced")
    nimg=$(ls "$ND_TMP"/img/*.png | wc -l)
    check "budget $budget: file(1) names all $nimg a 1088x$budget RGB PNG" [ "$nfile" -eq "$nimg" ]
  else
    fail "budget $budget: encode failed: $(head -c 300 "$ND_TMP/err")"
  fi
done
nd_done
