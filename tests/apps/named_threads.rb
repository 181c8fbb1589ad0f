# Two threads named with Thread#name= ("worker-a" burning in burn_a, "worker-b" in burn_b) for
# SECONDS (default 3). Ruby sets the OS thread name from it.
def burn_a(stop)
  x = 0
  x += 1 while Process.clock_gettime(Process::CLOCK_MONOTONIC) < stop
end

def burn_b(stop)
  x = 0
  x += 1 while Process.clock_gettime(Process::CLOCK_MONOTONIC) < stop
end

stop = Process.clock_gettime(Process::CLOCK_MONOTONIC) + (ARGV[0] || 3).to_f
a = Thread.new { Thread.current.name = "worker-a"; burn_a(stop) }
b = Thread.new { Thread.current.name = "worker-b"; burn_b(stop) }
[a, b].each(&:join)
