-- miltertest script for packaging/ci-check.
--   miltertest -D sock=unix:/path -D mode=connect -s probe.lua   connect + negotiate only
--   miltertest -D sock=unix:/path -D mode=full -s probe.lua      one message; expects an
--                                                                Authentication-Results header
--   miltertest -D sock=unix:/path -D mode=sign -s probe.lua      the same; expects DKIM-Signature
-- Exits non-zero (error) on any failure, e.g. EACCES on connect.
if sock == nil then error "set -D sock=SOCKETSPEC" end
if mode == nil then mode = "connect" end
mt.set_timeout(30)

local conn = mt.connect(sock)
if conn == nil then error("cannot connect to " .. sock) end

if mode == "connect" then
	if mt.negotiate(conn, nil, nil, nil) ~= nil then error "negotiation failed" end
	mt.disconnect(conn)
	print("probe: connected and negotiated with " .. sock)
	return
end

local function expect(what, status, want)
	if status ~= nil then error(what .. " failed") end
	local got = mt.getreply(conn)
	if got ~= want then error(what .. ": unexpected reply " .. tostring(got)) end
end

mt.macro(conn, SMFIC_CONNECT, "j", "ci.authmilter.test", "{daemon_name}", "ci")
expect("conninfo", mt.conninfo(conn, "mail.example.test", "127.0.0.1"), SMFIR_CONTINUE)
expect("helo", mt.helo(conn, "mail.example.test"), SMFIR_CONTINUE)
mt.macro(conn, SMFIC_MAIL, "i", "CITEST1")
expect("mailfrom", mt.mailfrom(conn, "<sender@example.test>"), SMFIR_CONTINUE)
expect("rcptto", mt.rcptto(conn, "<rcpt@dest.test>"), SMFIR_CONTINUE)
expect("header From", mt.header(conn, "From", "sender@example.test"), SMFIR_CONTINUE)
expect("header To", mt.header(conn, "To", "rcpt@dest.test"), SMFIR_CONTINUE)
expect("header Subject", mt.header(conn, "Subject", "ci probe"), SMFIR_CONTINUE)
expect("eoh", mt.eoh(conn), SMFIR_CONTINUE)
expect("body", mt.bodystring(conn, "hello\r\n"), SMFIR_CONTINUE)
if mt.eom(conn) ~= nil then error "eom failed" end
local reply = mt.getreply(conn)
if reply ~= SMFIR_ACCEPT and reply ~= SMFIR_CONTINUE then
	error("eom: unexpected reply " .. tostring(reply))
end
local want = "Authentication-Results"
if mode == "sign" then want = "DKIM-Signature" end
if not (mt.eom_check(conn, MT_HDRINSERT, want) or mt.eom_check(conn, MT_HDRADD, want)) then
	error("no " .. want .. " header added")
end
print("probe: " .. want .. ":" .. tostring(mt.getheader(conn, want, 0)))
mt.disconnect(conn)
