# Example app with a known CPU split: slow_function does 3x the work of fast_function, so a CPU
# profile should show about 75% / 25% between them. A thread that only sleeps must not appear.
# Optional argument: seconds to run (default: forever).

def work(n)
  total = 0
  i = 0
  while i < n
    total += i * i % 7
    i += 1
  end
  total
end

def slow_function
  work(3 * 20_000)
end

def fast_function
  work(20_000)
end

sleeper = Thread.new do
  loop { sleep 0.05 }
end

seconds = ARGV[0] ? ARGV[0].to_f : nil
start = Process.clock_gettime(Process::CLOCK_MONOTONIC)
rounds = 0
while seconds.nil? || Process.clock_gettime(Process::CLOCK_MONOTONIC) - start < seconds
  slow_function
  fast_function
  rounds += 1
end
sleeper.kill
puts "done: #{rounds} rounds"
