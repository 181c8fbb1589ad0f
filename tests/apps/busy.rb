# Burns CPU in N forked processes for SECONDS of wall time each, then prints the CPU time the
# kernel gave the program (itself and its children): "cpu SECONDS".   busy.rb N SECONDS
def burn(seconds)
  stop = Process.clock_gettime(Process::CLOCK_MONOTONIC) + seconds
  x = 0
  while Process.clock_gettime(Process::CLOCK_MONOTONIC) < stop
    20_000.times { |i| x += i * i }
  end
end

n, seconds = ARGV[0].to_i, ARGV[1].to_f
n.times { fork { burn(seconds) } }
Process.waitall
t = Process.times
puts format("cpu %.4f", t.utime + t.stime + t.cutime + t.cstime)
