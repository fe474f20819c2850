module virtwarden.test/delayline

go 1.21
