# spec/apps/pass_socket.py: hands a listening socket to a program as an inherited descriptor, as
# socket activation does. Usage: pass_socket.py unix|tcp WHERE FD SYSTEMD [exec] PROGRAM ARGS...
# Binds a unix socket at WHERE, or a TCP one on 127.0.0.1:0 (its port written to the file WHERE
# unless WHERE is -), puts it on descriptor FD and execs PROGRAM. With SYSTEMD a number (not -),
# it also sets LISTEN_FDS=1, LISTEN_FDNAMES=scgi and LISTEN_PID to its own pid plus that number,
# as systemd does for a .socket unit.
import os, socket, sys

kind, where, fd, systemd, argv = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5:]
if argv and argv[0] == "exec":
    argv = argv[1:]
if kind == "unix":
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(where)
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    if where != "-":
        with open(where, "w") as f:
            f.write(str(s.getsockname()[1]))
s.listen(64)
if s.fileno() == fd:
    s.detach()
else:
    os.dup2(s.fileno(), fd)
    s.close()
os.set_inheritable(fd, True)
if systemd != "-":
    os.environ["LISTEN_FDS"] = "1"
    os.environ["LISTEN_PID"] = str(os.getpid() + int(systemd))
    os.environ["LISTEN_FDNAMES"] = "scgi"
os.execv(argv[0], argv)
