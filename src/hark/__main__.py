from hark.cli import main

main()
