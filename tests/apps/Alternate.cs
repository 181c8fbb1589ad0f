// Alternates between two methods about every 50 ms, busy in managed code in both, for SECONDS
// (default 8): a sampler whose bursts lined up with the ~100 ms cycle would give one of them
// more. The CPU split between First and Second must come out 1:1. The work per turn is
// calibrated once at the start (reading the clock inside the turns would be native code, where
// the runtime's sampler tends to catch the thread, and which a CPU profile does not count).
//   mcs -optimize+ -target:exe -out:alternate.dll Alternate.cs
using System;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;

public static class Alternate
{
    static volatile int sink;

    [MethodImpl(MethodImplOptions.NoInlining)]
    static int Work(int n)
    {
        int total = 0;
        for (int i = 0; i < n; i++)
        {
            total += i * i % 7;
        }
        return total;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    static void First(long chunks)
    {
        for (long c = 0; c < chunks; c++) sink += Work(10000);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    static void Second(long chunks)
    {
        for (long c = 0; c < chunks; c++) sink += Work(10000);
    }

    public static int Main(string[] args)
    {
        double seconds = args.Length > 0 ? double.Parse(args[0], CultureInfo.InvariantCulture) : 8;
        // Chunks of 10,000 iterations per 50 ms.
        var watch = Stopwatch.StartNew();
        long calibration = 0;
        while (watch.ElapsedMilliseconds < 200)
        {
            sink += Work(10000);
            calibration++;
        }
        long chunks = Math.Max(1, calibration / 4);
        watch.Restart();
        while (watch.Elapsed.TotalSeconds < seconds)
        {
            First(chunks);
            Second(chunks);
        }
        return 0;
    }
}
