from pgcompress.cli.main import main

main()
