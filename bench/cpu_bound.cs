// Benchmark target (C# twin of cpu_bound.py): fixed CPU-bound work in a 10-deep stack plus one
// sleeping thread. Prints "ready", waits for the profiler, then "work <wall s> <cpu s>".
using System;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Threading;

public static class CpuBound
{
    static volatile int sink;

    [MethodImpl(MethodImplOptions.NoInlining)]
    static int Leaf(int n)
    {
        int total = 0;
        for (int i = 0; i < n; i++) total += i * i % 7;
        return total;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    static int Level(int depth, int n)
    {
        return depth == 0 ? Leaf(n) : Level(depth - 1, n);
    }

    public static void Main(string[] args)
    {
        int rounds = args.Length > 0 ? int.Parse(args[0]) : 2000;
        double settle = args.Length > 1 ? double.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 0.7;
        new Thread(() => { while (true) Thread.Sleep(100); }) { IsBackground = true }.Start();
        Console.WriteLine("ready");
        Console.Out.Flush();
        Thread.Sleep((int)(settle * 1000));
        var proc = Process.GetCurrentProcess();
        var cpu0 = proc.TotalProcessorTime;
        var wall = Stopwatch.StartNew();
        for (int r = 0; r < rounds; r++) sink += Level(8, 2000000);
        proc.Refresh();
        var cpu = proc.TotalProcessorTime - cpu0;
        Console.WriteLine(string.Format(System.Globalization.CultureInfo.InvariantCulture, "work {0:F4} {1:F4}", wall.Elapsed.TotalSeconds, cpu.TotalSeconds));
    }
}
