# Every kind of frame a stack reader must name right, all the time, on CPython 2.7 to 3.15:
# deep recursion, generators, coroutines, lambdas, class and static methods, nested functions,
# exceptions being handled, threads starting and dying, and code objects compiled, run and freed
# in a loop (so freed addresses are reused by new code objects with other names and lines).
import sys
import threading
import time

stop = time.time() + float(sys.argv[1] if len(sys.argv) > 1 else 30)


def spin(n):
    x = 0
    for i in range(n):
        x += i * i
    return x


def recurse(depth):
    if depth == 0:
        return spin(2000)
    return recurse(depth - 1) + 1


def numbers(n):
    for i in range(n):
        yield spin(300) + i


def consume_generator():
    return sum(numbers(20))


class Shape(object):
    def area(self):
        return spin(1500)

    @classmethod
    def build(cls):
        return cls().area()

    @staticmethod
    def static_work():
        return (lambda k: spin(k))(1500)


def outer():
    def middle():
        def inner():
            return spin(1500)
        return inner()
    return middle()


def handler():
    try:
        raise ValueError("boom")
    except ValueError:
        return spin(1500)
    finally:
        spin(200)


def compile_loop(i):
    # A new function name and body each time: the code objects are freed after the call.
    name = "generated_%d" % (i % 50)
    src = "def %s(n):\n    t = 0\n%s    for k in range(n):\n        t += k\n    return t\n" % (
        name,
        "    t += 1\n" * (i % 7),
    )
    scope = {}
    exec(compile(src, "<zoo-%d>" % (i % 13), "exec"), scope)
    return scope[name](6000)


def short_lived_thread():
    t = threading.Thread(target=lambda: recurse(15))
    t.start()
    t.join()


CORO = None
if sys.version_info >= (3, 5):
    exec(
        "async def leaf():\n"
        "    return spin(1500)\n"
        "async def chain(n):\n"
        "    if n == 0:\n"
        "        return await leaf()\n"
        "    return await chain(n - 1)\n"
        "def run_coroutine():\n"
        "    c = chain(6)\n"
        "    try:\n"
        "        c.send(None)\n"
        "    except StopIteration as e:\n"
        "        return e.value\n",
        globals(),
    )
    CORO = run_coroutine  # noqa: F821 (defined by the exec above)


def background():
    while time.time() < stop:
        recurse(40)
        consume_generator()


def main():
    threading.Thread(target=background).start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    i = 0
    while time.time() < stop:
        i += 1
        recurse(30)
        consume_generator()
        Shape.build()
        Shape.static_work()
        outer()
        handler()
        for k in range(4):
            compile_loop(i * 4 + k)
        if CORO is not None:
            CORO()
        if i % 10 == 0:
            short_lived_thread()


main()
