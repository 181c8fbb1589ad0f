// A .NET program that keeps changing what a profiler must remember, for the long-session memory
// check (scripts/soak_dotnet.py):
//   * one thread always busy in managed code (the samples);
//   * a new short-lived thread every 20 ms (thread ids the profiler sees once, then never again);
//   * a new DynamicMethod every 20 ms, called then dropped (a JIT event with a fresh code range
//     each time, and an unload once the GC collects it).
// Runs until killed, or for the seconds given.
//
//   mcs -optimize+ -target:exe -out:churn.dll churn.cs
using System;
using System.Reflection.Emit;
using System.Runtime.CompilerServices;
using System.Threading;

public static class Churn
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
    static void Busy()
    {
        while (true)
        {
            sink += Work(1000000);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    static void ShortLived()
    {
        sink += Work(1000000);
    }

    static int NewDynamicMethod(int i)
    {
        var m = new DynamicMethod("generated_" + (i % 1000), typeof(int), new[] { typeof(int) }, typeof(Churn).Module);
        var il = m.GetILGenerator();
        il.Emit(OpCodes.Ldarg_0);
        il.Emit(OpCodes.Ldc_I4, i);
        il.Emit(OpCodes.Add);
        il.Emit(OpCodes.Ret);
        var f = (Func<int, int>)m.CreateDelegate(typeof(Func<int, int>));
        return f(1);
    }

    public static int Main(string[] args)
    {
        double seconds = args.Length > 0 ? double.Parse(args[0], System.Globalization.CultureInfo.InvariantCulture) : double.MaxValue;
        new Thread(Busy) { IsBackground = true, Name = "busy" }.Start();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        long threads = 0;
        while (clock.Elapsed.TotalSeconds < seconds)
        {
            var t = new Thread(ShortLived) { IsBackground = true };
            t.Start();
            sink += NewDynamicMethod((int)threads);
            t.Join();
            threads++;
            Thread.Sleep(20);
            if (threads % 500 == 0)
            {
                GC.Collect();
            }
        }
        Console.WriteLine("done: " + threads + " threads and dynamic methods");
        return 0;
    }
}
