"""Reads stdin to the end and echoes it upper-cased."""
import sys
data = sys.stdin.read()
sys.stdout.write(data.upper())
