#!/usr/bin/env python3
"""Sends exactly N `GET /` requests to 127.0.0.1:PORT over C keep-alive HTTP/1.1 connections
(N/C each, one at a time per connection) and checks every answer is 200. For instruction
counts of a proxy under callgrind, where a fixed request count matters and wrk's duration
does not. Usage: http-load.py PORT N [C]"""
import http.client
import sys
import threading

port, n = int(sys.argv[1]), int(sys.argv[2])
conns = int(sys.argv[3]) if len(sys.argv) > 3 else 16
failures = []


def worker(k):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    for _ in range(k):
        c.request("GET", "/")
        r = c.getresponse()
        r.read()
        if r.status != 200:
            failures.append(r.status)
    c.close()


ts = [threading.Thread(target=worker, args=(n // conns + (1 if i < n % conns else 0),)) for i in range(conns)]
for t in ts:
    t.start()
for t in ts:
    t.join()
if failures:
    sys.exit(f"{len(failures)} non-200 answers, e.g. {failures[0]}")
