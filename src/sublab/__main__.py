from sublab.cli import main

main()
