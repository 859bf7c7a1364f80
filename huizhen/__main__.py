from huizhen.cli import main

main()
