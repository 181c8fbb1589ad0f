// Two threads named through Thread.Name ("worker-a" in BurnA, "worker-b" in BurnB) burn CPU in
// managed code for SECONDS (default 3).
//   mcs -optimize+ -target:exe -out:named_threads.dll NamedThreads.cs
using System;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Threading;

public static class NamedThreads
{
    static volatile int sink;
    static double seconds;

    [MethodImpl(MethodImplOptions.NoInlining)]
    static void BurnA()
    {
        var watch = Stopwatch.StartNew();
        while (watch.Elapsed.TotalSeconds < seconds)
            for (int i = 0; i < 100000; i++) sink += i * i % 7;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    static void BurnB()
    {
        var watch = Stopwatch.StartNew();
        while (watch.Elapsed.TotalSeconds < seconds)
            for (int i = 0; i < 100000; i++) sink += i * i % 7;
    }

    public static int Main(string[] args)
    {
        seconds = args.Length > 0 ? double.Parse(args[0], CultureInfo.InvariantCulture) : 3;
        var a = new Thread(BurnA) { Name = "worker-a" };
        var b = new Thread(BurnB) { Name = "worker-b" };
        a.Start();
        b.Start();
        a.Join();
        b.Join();
        return 0;
    }
}
