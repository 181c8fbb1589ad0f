# Benchmark target (Ruby twin of cpu_bound.py): fixed CPU-bound work in a 10-deep stack plus
# one sleeping thread. Prints "ready", waits for the profiler, then "work <wall s> <cpu s>".
def leaf(n)
  total = 0
  i = 0
  while i < n
    total += i * i % 7
    i += 1
  end
  total
end

def level(depth, n)
  return leaf(n) if depth.zero?
  level(depth - 1, n)
end

rounds = (ARGV[0] || 400).to_i
settle = (ARGV[1] || 0.7).to_f
Thread.new { loop { sleep 0.1 } }
$stdout.sync = true
puts "ready"
sleep settle
w0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
c0 = Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID)
rounds.times { level(8, 20_000) }
printf("work %.4f %.4f\n", Process.clock_gettime(Process::CLOCK_MONOTONIC) - w0,
       Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID) - c0)
