# bench/plot.gp: requests per second by connections, direct SCGI, one bar per server (written by
# bench/compare.sh, which passes the variables below with gnuplot -e).
#   datafile: lines "CONNS rps1 min1 max1 rps2 min2 max2 rps3 min3 max3" (median, min, max)
#   outfile, t1 t2 t3 (the servers' names), subtitle
if (!exists("datafile")) datafile = 'results.dat'
if (!exists("outfile")) outfile = 'results.png'
if (!exists("t1")) t1 = 'scgi-lua'
if (!exists("t2")) t2 = 'uWSGI'
if (!exists("t3")) t3 = 'floor'
if (!exists("subtitle")) subtitle = ''

set terminal pngcairo size 960,560 font 'sans,11'
set output outfile
set title "Hello world over SCGI: requests per second by concurrent connections\n{/*0.8 ".subtitle."}"
set style data histogram
set style histogram errorbars gap 1.5 lw 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key top left
set grid ytics
set yrange [0:*]
set ylabel 'requests per second'
set xlabel 'connections (bench/scgi-load, a new connection per request)'
set format y '%.0f'
plot datafile using 2:3:4:xtic(1) title t1 lc rgb '#1f77b4', \
     '' using 5:6:7 title t2 lc rgb '#ff7f0e', \
     '' using 8:9:10 title t3 lc rgb '#7f7f7f'
