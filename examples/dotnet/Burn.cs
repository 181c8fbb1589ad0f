// Example .NET app with a known CPU split: Slow() does 3x the work of Fast(), so a CPU profile
// shows about 75% / 25% between them. A thread that only sleeps must not appear in a CPU profile.
//
// Build with Mono's C# compiler, run on CoreCLR (see README.md next to this file):
//   mcs -optimize+ -out:burn.dll -target:exe Burn.cs
//   dotnet burn.dll [seconds [exit-code [command args...]]]
// seconds defaults to "until killed"; a command, when given, is started as a child process first
// (the tests use it to check that a profiler finds the subprocesses of a .NET program).
using System;
using System.Runtime.CompilerServices;
using System.Threading;

namespace BurnDemo
{
    public static class Worker
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
        public static int Slow()
        {
            return Work(2000000) + Work(2000000) + Work(2000000);
        }

        [MethodImpl(MethodImplOptions.NoInlining)]
        public static int Fast()
        {
            return Work(2000000);
        }

        [MethodImpl(MethodImplOptions.NoInlining)]
        static void Sleeper()
        {
            while (true)
            {
                Thread.Sleep(50);
            }
        }

        public static int Main(string[] args)
        {
            double seconds = args.Length > 0 ? double.Parse(args[0], System.Globalization.CultureInfo.InvariantCulture) : double.MaxValue;
            int exitCode = args.Length > 1 ? int.Parse(args[1]) : 0;
            if (args.Length > 2)
            {
                var start = new System.Diagnostics.ProcessStartInfo(args[2], string.Join(" ", args, 3, args.Length - 3)) { UseShellExecute = false };
                System.Diagnostics.Process.Start(start);
            }
            var sleeper = new Thread(Sleeper) { IsBackground = true, Name = "sleeper" };
            sleeper.Start();
            var clock = System.Diagnostics.Stopwatch.StartNew();
            long rounds = 0;
            while (clock.Elapsed.TotalSeconds < seconds)
            {
                sink += Slow();
                sink += Fast();
                rounds++;
            }
            Console.WriteLine("done: " + rounds + " rounds");
            return exitCode;
        }
    }
}
