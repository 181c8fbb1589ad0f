"""What the .NET scripts share: where things are, and compiling a bench/*.cs program with mcs."""
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYROSCOPE = os.path.join(ROOT, "target", "x86_64-unknown-linux-gnu", "release", "pyroscope")
DOTNET = os.path.join(os.environ.get("DOTNET31_ROOT", os.path.expanduser("~/.cache/dotnet31")), "dotnetcore2", "bin", "dotnet")
OUT = os.path.join(ROOT, "target", "bench-dotnet")
RUNTIMECONFIG = os.path.join(ROOT, "examples", "dotnet", "burn.runtimeconfig.json")


def build(name):
    """Compiles bench/NAME.cs into target/bench-dotnet/NAME.dll (with its runtimeconfig); returns its path."""
    os.makedirs(OUT, exist_ok=True)
    dll = os.path.join(OUT, name + ".dll")
    subprocess.check_call(["mcs", "-optimize+", "-target:exe", "-out:" + dll, os.path.join(ROOT, "bench", name + ".cs")])
    with open(RUNTIMECONFIG) as f, open(os.path.join(OUT, name + ".runtimeconfig.json"), "w") as g:
        g.write(f.read())
    return dll
