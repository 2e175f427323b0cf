import InceptionCommands

await InceptionCommand.launch()
