"""A lenient DNS server for the attack tests: every message that reaches UDP or TCP port 53 of
ADDR is logged raw, as hex, one line each (`udp HEX`, `tcp HEX`, and `tcp-partial HEX` for bytes
left when a connection closes), before it is answered with itself as a NOERROR response (QR and RA set, RCODE 0).
It interprets nothing, so the log shows exactly what reached a name server.

Single-threaded: each round handles open connections first, then new ones, then datagrams, so a
datagram (the tests' sentinel) is logged after everything that had reached the server before it
was sent.

Usage: raw_dns_server.py ADDR LOG
"""
import select
import socket
import sys

addr, log_path = sys.argv[1], sys.argv[2]
log = open(log_path, "a", buffering=1)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind((addr, 53))
tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind((addr, 53))
tcp.listen(16)
conns = {}


def answer(msg):
    # The message itself with QR and RA set and RCODE 0: the question echoed, no records added.
    if len(msg) < 4:
        return msg[:2] + b"\x81\x80" + bytes(8) if len(msg) >= 2 else b""
    return msg[:2] + bytes([msg[2] | 0x80, 0x80]) + msg[4:]


while True:
    ready, _, _ = select.select([udp, tcp] + list(conns), [], [])
    for s in [s for s in ready if s in conns]:
        data = s.recv(65536)
        buf = conns[s] + data
        while len(buf) >= 2 and len(buf) >= 2 + int.from_bytes(buf[:2], "big"):
            n = int.from_bytes(buf[:2], "big")
            msg, buf = buf[2 : 2 + n], buf[2 + n :]
            log.write("tcp " + msg.hex() + "\n")
            a = answer(msg)
            try:
                s.sendall(len(a).to_bytes(2, "big") + a)
            except OSError:
                pass
        conns[s] = buf
        if not data:
            if buf:
                log.write("tcp-partial " + buf.hex() + "\n")
            s.close()
            del conns[s]
    if tcp in ready:
        c, _ = tcp.accept()
        conns[c] = b""
    if udp in ready:
        msg, peer = udp.recvfrom(65536)
        log.write("udp " + msg.hex() + "\n")
        a = answer(msg)
        if a:
            udp.sendto(a, peer)
