-- spec/apps/checksum.lua: a simple streaming checksum shared by the upload app and its specs:
-- Fletcher-like sums over 64-byte blocks of 16 little-endian 32-bit words (wrapping 64-bit
-- integers), the last block padded with zeros, and the length. Fast enough in plain Lua for
-- hundreds of MiB; order-sensitive at the block level.
local unpack, sub, rep, format = string.unpack, string.sub, string.rep, string.format

local C = {}

local FMT = "<" .. ("I4"):rep(16)

-- A fresh checksum state.
function C.new() return { a = 0, b = 0, n = 0, rest = "" } end

-- Adds the full 64-byte blocks of s (from its start up to full) to the sums a and b.
local function blocks(s, full, a, b)
  for pos = 1, full, 64 do
    local w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15, w16 = unpack(FMT, s, pos)
    a = a + w1 + w2 + w3 + w4 + w5 + w6 + w7 + w8 + w9 + w10 + w11 + w12 + w13 + w14 + w15 + w16
    b = b + a
  end
  return a, b
end

-- Feeds the bytes of s into the state st.
function C.update(st, s)
  st.n = st.n + #s
  if st.rest ~= "" then s = st.rest .. s end
  local full = #s - #s % 64
  st.a, st.b = blocks(s, full, st.a, st.b)
  st.rest = sub(s, full + 1)
end

-- The checksum of everything fed to st, as hex text "A-B-LENGTH".
function C.final(st)
  local a, b = st.a, st.b
  if st.rest ~= "" then a, b = blocks(st.rest .. rep("\0", 64 - #st.rest), 64, a, b) end
  return format("%016x-%016x-%d", a, b, st.n)
end

-- The checksum of one string.
function C.of(s)
  local st = C.new()
  C.update(st, s)
  return C.final(st)
end

return C
