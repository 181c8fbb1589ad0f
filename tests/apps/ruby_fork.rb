# Two forked workers burn CPU in worker_burn for 2 s; the parent only waits.
def worker_burn(seconds)
  stop = Process.clock_gettime(Process::CLOCK_MONOTONIC) + seconds
  total = 0
  while Process.clock_gettime(Process::CLOCK_MONOTONIC) < stop
    10_000.times { |i| total += i % 3 }
  end
  total
end

pids = 2.times.map { fork { worker_burn(2.0) } }
pids.each { |pid| Process.wait(pid) }
puts "workers done"
